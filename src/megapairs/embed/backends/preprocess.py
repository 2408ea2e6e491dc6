"""Image preprocessing in NumPy/PIL (no torchvision): resize, centre crop (uint8, `Geometry`), normalise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from megapairs.embed.decode import Geometry


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

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.crop, self.shortest_edge, self.resample)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (3, H, W) float32, pixel for pixel what transformers' CLIP processor gives."""
        x = self.geometry(image).astype(np.float32) * self.rescale  # (H, W, 3)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, H, W)

    def normalize(self, pixels: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
        """(B, H, W, 3) uint8 from `geometry` -> (B, 3, H, W) float32 on `device`: the uint8 batch
        crosses to the device (4x fewer bytes than float) and is normalised there, with the same
        float32 operations in the same order as `__call__`, so the values are bit-identical."""
        x = pixels.to(device, non_blocking=True).to(torch.float32) * self.rescale
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device)
        return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


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
