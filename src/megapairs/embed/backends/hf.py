"""Hugging Face encoders: `hf:NAME_OR_FOLDER`.

The model family comes from the checkpoint's config (`model_type`), never from the name:
- clip / siglip / siglip2: image tower (`get_image_features`) and text tower (`get_text_features`);
- dinov2 / dinov3_vit / vit: image only, the CLS embedding (`pooler_output`);
- anything else with a text config (bert, xlm-roberta, mpnet, ...): sentence embedding by mean pooling.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from megapairs.embed.backends.base import (
    IMAGE_ENCODERS, TEXT_ENCODERS, ImageEncoder, TextEncoder, pick_device, pooled,
)
from megapairs.embed.backends.preprocess import from_hf_folder
from megapairs.registry import needs_argument

DUAL_TOWER = {"clip", "siglip", "siglip2"}
VISION_ONLY = {"dinov2", "dinov2_with_registers", "dinov3_vit", "vit"}


def resolve_folder(name: str) -> Path:
    """A local folder as is; a hub name through the local HF cache (or a download when online)."""
    from megapairs.errors import ModelNotFound

    if not name.strip():  # `hf:` alone would load the current folder
        raise ModelNotFound("the model spec names no model (nothing after the colon)",
                        hint="give a hub name or a folder, e.g. hf:openai/clip-vit-base-patch16")
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    if p.exists() or name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        what = "is a file, not a model folder" if p.exists() else "does not exist"
        raise ModelNotFound(f"model folder {name} {what}", hint="check the path, or give a hub name like "
                        "openai/clip-vit-base-patch16")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as e:  # offline and not cached, typo, ...
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ModelNotFound(f"cannot find Hugging Face model {name!r} locally or on the hub "
                        f"({type(e).__name__}{': ' + reason if reason else ''})",
                        hint="pass a local model folder, or download it first with `huggingface-cli download`"
                        ) from None


def _model_type(folder: Path) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder).model_type


class HFImageEncoder(ImageEncoder):
    def __init__(self, name: str, device: str = "cpu") -> None:
        from transformers import AutoModel

        self.spec = f"hf:{name}"
        self.device = pick_device(device)
        folder = resolve_folder(name)
        self.model_type = _model_type(folder)
        if self.model_type not in DUAL_TOWER | VISION_ONLY:
            raise ValueError(f"{self.spec}: model type {self.model_type!r} has no image encoder we know")
        self.model = AutoModel.from_pretrained(folder).eval().to(self.device)
        self.pre = from_hf_folder(folder)
        self.preprocess_key = self.pre.key
        cfg = self.model.config
        self.dim = int(getattr(cfg, "projection_dim", 0) or getattr(cfg, "hidden_size", 0)
                       or cfg.vision_config.hidden_size)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, dtype=next(self.model.parameters()).dtype)
        if self.model_type in DUAL_TOWER:
            feats = pooled(self.model.get_image_features(pixel_values=pixels))  # (B, D)
        else:
            feats = self.model(pixel_values=pixels).pooler_output  # (B, D) CLS
        return F.normalize(feats.float(), dim=-1).cpu()


class HFTextEncoder(TextEncoder):
    def __init__(self, name: str, device: str = "cpu", max_length: int | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.spec = f"hf:{name}"
        self.device = pick_device(device)
        folder = resolve_folder(name)
        self.model_type = _model_type(folder)
        if self.model_type in VISION_ONLY:
            raise ValueError(f"{self.spec}: {self.model_type!r} is an image-only model")
        self.model = AutoModel.from_pretrained(folder).eval().to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        cfg = self.model.config
        if self.model_type in DUAL_TOWER:
            self.max_length = max_length or cfg.text_config.max_position_embeddings
            self.dim = int(getattr(cfg, "projection_dim", 0) or cfg.text_config.hidden_size)
        else:
            self.max_length = max_length or min(512, getattr(cfg, "max_position_embeddings", 512))
            self.dim = int(cfg.hidden_size)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        padding = "max_length" if self.model_type in {"siglip", "siglip2"} else True  # SigLIP trained padded
        tok = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        if self.model_type in DUAL_TOWER:
            feats = pooled(self.model.get_text_features(**tok))  # (B, D)
        else:
            hidden = self.model(**tok).last_hidden_state  # (B, L, H)
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            feats = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)
        return F.normalize(feats.float(), dim=-1).cpu()


@IMAGE_ENCODERS.register("hf", check=needs_argument("hf", "openai/clip-vit-base-patch16"))
def _hf_image(name: str, device: str = "cpu") -> ImageEncoder:
    return HFImageEncoder(name, device=device)


@TEXT_ENCODERS.register("hf", check=needs_argument("hf", "sentence-transformers/all-MiniLM-L6-v2"))
def _hf_text(name: str, device: str = "cpu") -> TextEncoder:
    return HFTextEncoder(name, device=device)
