"""Encoder interfaces. Every encoder returns L2-normalised float32 tensors (B, D) on CPU."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from PIL import Image

from megapairs.embed.backends.preprocess import Preprocess
from megapairs.registry import Registry


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: embeddings need no more precision
    return device


def pooled(output) -> torch.Tensor:
    """transformers 5 returns model outputs from `get_*_features`; 4.x returned tensors."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output


class ImageEncoder(ABC):
    spec: str
    dim: int
    # Encoders with equal keys share one preprocessed batch (each image is decoded once anyway).
    preprocess_key: str
    # Resize/crop (done by the decode workers, uint8) + normalisation (done on the device).
    pre: Preprocess

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> (3, H, W) float32."""
        return self.pre(image)

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D), L2-normalised."""


class TextEncoder(ABC):
    spec: str
    dim: int

    @abstractmethod
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """list of B strings -> (B, D), L2-normalised."""


IMAGE_ENCODERS: Registry[ImageEncoder] = Registry("image encoder")
TEXT_ENCODERS: Registry[TextEncoder] = Registry("text encoder")
