"""The in-training holdout shares no image with training rows; resume unpickles nothing."""

import json

import numpy as np
import pytest
import torch

from megapairs.models.feature_cache import ref_key
from megapairs.train import checkpoint
from megapairs.train.data import TripletDataset, grouped_holdout, load_triplets
from megapairs.train.evaluate import held_out_rows
from megapairs.train.trainer import Trainer

from .conftest import tiny_config


def test_grouped_holdout_shares_no_image_with_training(triplets):
    data = load_triplets(triplets)
    hold = grouped_holdout(data, 4, seed=0)
    assert len(hold.eval_rows) > 0 and not set(hold.eval_rows) & set(hold.train_rows)
    train_qt = {ref_key(data.row(int(i))[c]) for i in hold.train_rows for c in ("q_img", "t_img")}
    eval_qt = {ref_key(data.row(int(i))[c]) for i in hold.eval_rows for c in ("q_img", "t_img")}
    assert not train_qt & eval_qt  # grouped by query + target images
    ds = TripletDataset(data, hold.train_rows, num_hard_negatives=3, seed=0, load_images=False,
                        exclude=hold.val_images)
    used = {ref_key(x) for p in range(len(ds)) for e in range(3) for x in
            [ds.choose(p, e)["query_image"], *ds.choose(p, e)["candidates"]]}
    held, _ = held_out_rows(data, hold.eval_rows, hold.train_images)
    gallery = {k for r in held for k in (r["q_img"], r["t_img"], *r["hns"])}
    assert not used & gallery  # training never sees a held-out image, the held-out gallery no training one


def test_resume_loads_with_weights_only(clip_dir, triplets, tmp_path, monkeypatch):
    cfg = tiny_config(clip_dir, triplets, max_steps=2, save_every=1)

    def stop(step, loss):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "run", on_step=stop).fit()
    saved = checkpoint.latest(tmp_path / "run")
    state = json.loads((saved / "rng-rank0.json").read_text())
    assert {"python", "numpy", "torch"} <= set(state) and not list(saved.glob("rng-*.pt"))

    calls = []
    real_load = torch.load

    def strict_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        assert kwargs.get("weights_only") is True, "checkpoint files must load without unpickling"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", strict_load)
    resumed = Trainer(cfg, tmp_path / "run").fit()
    assert calls and [s for s, _ in resumed.history] == [1, 2]


def test_rng_state_round_trips_through_json():
    device = torch.device("cpu")
    state = json.loads(json.dumps(checkpoint.rng_state(device)))
    a = (np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(state, device)
    assert (np.random.rand(), torch.rand(1).item()) == a
