"""Configuration of the embed stage: one spec string per similarity view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from megapairs.configbase import ConfigBase, ConfigError

VIEW_MODALITY = {"image": "image", "visual": "image", "caption": "text"}
DECODE_MODES = ("auto", "threads", "processes")


@dataclass
class EmbedConfig(ConfigBase):
    # The three views of heterogeneous KNN mining ("" disables a view):
    image: str = "offline:label-bridge"  # CLIP-like image encoder (visual-semantic relations)
    visual: str = "offline:efficientnet-lite0"  # DINO-like visual encoder (visual-pattern relations)
    caption: str = "offline:minilm"  # text encoder on the captions
    dtype: str = "float16"
    batch_size: int = 32
    device: str = "auto"
    # Decoding (resize + crop to uint8; normalisation happens on the model's device). threads and
    # processes give bit-identical vectors; auto = processes on CUDA (decode-bound), threads on CPU.
    decode_mode: str = "auto"
    decode_workers: int = 0  # 0 = auto (cores - 1; at most 8 threads or 16 processes)
    decode_threads: int = 0  # the older name of decode_workers (configs saved before it); used when that is 0
    # JPEG draft decoding at the encoders' input size: much less decode work for big photos, vectors
    # close to (not identical with) a full decode. Off by default; changes vectors, so it is hashed.
    decode_draft: bool = False
    NOT_HASHED = ("batch_size", "device", "decode_threads", "decode_mode", "decode_workers")
    # hashed only when set: see ConfigBase.HASHED_IF_SET
    HASHED_IF_SET: ClassVar[dict[str, object]] = {"decode_draft": False}

    def validate(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"{self.where}.dtype must be float16 or float32, got {self.dtype!r}")
        if self.batch_size < 1:
            raise ConfigError(f"{self.where}.batch_size must be >= 1")
        if self.decode_mode not in DECODE_MODES:
            raise ConfigError(f"{self.where}.decode_mode must be one of {', '.join(DECODE_MODES)}, "
                              f"got {self.decode_mode!r}")
        for name in ("decode_workers", "decode_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{self.where}.{name} must be >= 0 (0 = auto)")
        if not self.views():
            raise ConfigError(f"{self.where}: at least one of image, visual, caption must name an encoder")

    def check_specs(self, where: str) -> None:
        from megapairs.embed.backends import check_encoder_spec

        for view, spec in self.views().items():
            check_encoder_spec(spec, VIEW_MODALITY[view], f"{where}.{view}")

    def views(self) -> dict[str, str]:
        return {v: getattr(self, v) for v in VIEW_MODALITY if getattr(self, v)}
