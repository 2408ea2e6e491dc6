"""Tiny random CLIP / LLaVA-NeXT checkpoint folders (BPE tokenizers built in-process) and images."""

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory):
    from megapairs.models.tiny import make_tiny_llava

    return make_tiny_llava(tmp_path_factory.mktemp("tiny-llava") / "llava")


@pytest.fixture(scope="session")
def image_paths(tmp_path_factory):
    """Three noise PNGs of different non-square shapes (exercise resize + centre crop)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(50, 70), (64, 48), (33, 90)]):
        p = root / f"im{i}.png"
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    return paths
