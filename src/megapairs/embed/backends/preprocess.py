"""Image preprocessing in NumPy/PIL (no torchvision): resize, centre crop, normalise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

_RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC}


@dataclass(frozen=True)
class Preprocess:
    """`shortest_edge` resize then `crop` centre crop (CLIP, DINOv2), or exact `size` (SigLIP)."""

    crop: tuple[int, int]
    shortest_edge: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = 3
    rescale: float = 1 / 255

    @property
    def key(self) -> str:
        return f"{self.shortest_edge}-{self.crop}-{self.mean}-{self.std}-{self.resample}-{self.rescale}"

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (3, H, W) float32, pixel for pixel what transformers' CLIP processor gives."""
        if image.mode != "RGB":  # convert() to the same mode copies: ~120 MB for a 40 Mpx photo
            image = image.convert("RGB")
        resample = _RESAMPLE.get(self.resample, Image.BICUBIC)
        ch, cw = self.crop
        if self.shortest_edge is None:
            image = image.resize((cw, ch), resample)
        else:
            # As transformers does: the short side becomes `shortest_edge`, the long side is truncated.
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.shortest_edge * long / short)
            nw, nh = (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)
            if (nw, nh) != (w, h):
                image = image.resize((nw, nh), resample)
            left, top = (nw - cw) // 2, (nh - ch) // 2
            if left < 0 or top < 0:  # smaller than the crop: fall back to a plain resize
                image, left, top = image.resize((cw, ch), resample), 0, 0
            image = image.crop((left, top, left + cw, top + ch))
        x = np.asarray(image, dtype=np.float32) * self.rescale  # (H, W, 3)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, H, W)


def _pair(v, default: int) -> tuple[int, int]:
    if v is None:
        return default, default
    if isinstance(v, int):
        return v, v
    if "height" in v:
        return int(v["height"]), int(v["width"])
    if "shortest_edge" in v:
        return int(v["shortest_edge"]), int(v["shortest_edge"])
    raise ValueError(f"unsupported size spec {v!r}")


def from_hf_folder(folder: Path, default_size: int = 224) -> Preprocess:
    """Read `preprocessor_config.json` of a CLIP / SigLIP / DINOv2 checkpoint folder."""
    path = Path(folder) / "preprocessor_config.json"
    cfg = json.loads(path.read_text()) if path.exists() else {}
    size = cfg.get("size", {"shortest_edge": default_size})
    mean = tuple(cfg.get("image_mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("image_std", (0.26862954, 0.26130258, 0.27577711)))
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if cfg.get("do_center_crop", "crop_size" in cfg):
        crop = _pair(cfg.get("crop_size"), default_size)
        edge = size.get("shortest_edge") if isinstance(size, dict) else size
        return Preprocess(crop, int(edge or crop[0]), mean, std, int(cfg.get("resample", 3)), rescale)
    return Preprocess(_pair(size, default_size), None, mean, std, int(cfg.get("resample", 2)), rescale)
