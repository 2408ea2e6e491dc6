"""Encoder backends by spec string.

- image encoders (`IMAGE_ENCODERS`): `hf:NAME_OR_DIR` (CLIP / SigLIP image tower, DINOv2 CLS),
  `offline:label-bridge`, `offline:efficientnet-lite0`;
- text encoders (`TEXT_ENCODERS`): `hf:NAME_OR_DIR` (CLIP / SigLIP text tower, or any
  sentence-embedding model with mean pooling), `offline:minilm`.
"""

from __future__ import annotations

from megapairs.embed.backends.base import IMAGE_ENCODERS, TEXT_ENCODERS, ImageEncoder, TextEncoder


def build_image_encoder(spec: str, device: str = "cpu") -> ImageEncoder:
    _register_builtins()
    return IMAGE_ENCODERS.build(spec, device=device)


def build_text_encoder(spec: str, device: str = "cpu") -> TextEncoder:
    _register_builtins()
    return TEXT_ENCODERS.build(spec, device=device)


def check_encoder_spec(spec: str, modality: str, field: str) -> None:
    """SpecError naming `field` unless `spec` names a known image / text encoder; loads no model."""
    _register_builtins()
    (IMAGE_ENCODERS if modality == "image" else TEXT_ENCODERS).check(spec, field)


def _register_builtins() -> None:
    import megapairs.embed.backends.hf  # noqa: F401
    import megapairs.embed.backends.offline  # noqa: F401


__all__ = ["ImageEncoder", "TextEncoder", "build_image_encoder", "build_text_encoder", "check_encoder_spec"]
