"""HF encoder backends on tiny random checkpoints saved to local folders (offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from megapairs.embed.backends import build_image_encoder, build_text_encoder
from megapairs.registry import SpecError
from tests.conftest import PREPROCESSOR, _tokenizer, draw_shape


def _batch(enc, images):
    return torch.from_numpy(np.stack([enc.preprocess(im) for im in images]))


def test_clip_image_and_text_match_model_outputs(tiny_clip_dir):
    from transformers import CLIPModel

    enc = build_image_encoder(f"hf:{tiny_clip_dir}", device="cpu")
    txt = build_text_encoder(f"hf:{tiny_clip_dir}", device="cpu")
    images = [draw_shape("circle", "red"), draw_shape("square", "blue", size=80)]
    x = _batch(enc, images)
    assert x.shape == (2, 3, 32, 32)
    got = enc.encode(x)
    assert got.shape == (2, 16) and torch.allclose(got.norm(dim=-1), torch.ones(2), atol=1e-5)
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()  # round trip from the local folder
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=x)
        ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    assert torch.allclose(got, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5)
    t = txt.encode_text(["a red circle", "a blue square on a light background"])
    assert t.shape == (2, 16) and torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_preprocessing_follows_the_folder_config(tiny_clip_dir):
    enc = build_image_encoder(f"hf:{tiny_clip_dir}")
    x = enc.preprocess(Image.new("RGB", (100, 50), (255, 255, 255)))
    expected = (1.0 - np.array(PREPROCESSOR["image_mean"])) / np.array(PREPROCESSOR["image_std"])
    assert x.shape == (3, 32, 32)
    assert np.allclose(x[:, 16, 16], expected, atol=1e-4)


def test_dinov2_uses_cls_embedding(tiny_dino_dir):
    from transformers import Dinov2Model

    enc = build_image_encoder(f"hf:{tiny_dino_dir}")
    x = _batch(enc, [draw_shape("triangle", "green")])
    got = enc.encode(x)
    with torch.no_grad():
        ref = Dinov2Model.from_pretrained(tiny_dino_dir).eval()(pixel_values=x).pooler_output
    assert got.shape == (1, 32)
    assert torch.allclose(got, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5)
    with pytest.raises(ValueError, match="image-only"):
        build_text_encoder(f"hf:{tiny_dino_dir}")


def test_siglip_resizes_without_crop(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    tok = _tokenizer()
    cfg = SiglipConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
    )
    SiglipModel(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    enc = build_image_encoder(f"hf:{tmp_path}")
    assert enc.pre.shortest_edge is None  # exact resize, no centre crop
    out = enc.encode(_batch(enc, [draw_shape("circle", "red", size=90)]))
    assert out.shape == (1, 32)
    t = build_text_encoder(f"hf:{tmp_path}").encode_text(["a red circle"])
    assert t.shape == (1, 32)


def test_unknown_specs_fail_clearly(tmp_path):
    with pytest.raises(SpecError, match="known prefixes"):
        build_image_encoder("nope:thing")
    with pytest.raises(FileNotFoundError, match="cannot find Hugging Face model"):
        build_image_encoder("hf:surely-not/a-real-model-xyz")
