"""Trainer runs end to end; an interrupted run resumes to the uninterrupted loss curve; grad cache
inside the trainer leaves the curve unchanged; outputs (card, plot, model) are written."""

import json

import numpy as np
import pytest
import torch

from megapairs.train import checkpoint
from megapairs.train.trainer import Trainer, linear_schedule

from .conftest import tiny_config


class Crash(Exception):
    pass


def _curve(result):
    return [v for _, v in result.history]


def test_interrupted_run_resumes_to_the_same_curve(clip_dir, triplets, tmp_path):
    cfg = tiny_config(clip_dir, triplets, max_steps=4)
    full = Trainer(cfg, tmp_path / "full").fit()
    assert [s for s, _ in full.history] == [1, 2, 3, 4]

    def crash(step, loss):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        Trainer(cfg, tmp_path / "cut", on_step=crash).fit()
    assert checkpoint.latest(tmp_path / "cut").name == "step-00000002"
    resumed = Trainer(cfg, tmp_path / "cut").fit()
    np.testing.assert_allclose(_curve(resumed), _curve(full), rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]  # rows after the checkpoint were not duplicated

    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)

    # outputs: model card, loss plot, summary; the folder loads as a retriever
    card = (tmp_path / "full" / "final" / "README.md").read_text()
    assert "temperature 0.02" in card and "16 triplets" in card
    assert (tmp_path / "full" / "final" / "loss.png").stat().st_size > 1000
    from megapairs.models.base import load_retriever

    model = load_retriever(f"ckpt:{tmp_path / 'full'}", device="cpu")
    assert model.encode(text="make it red").shape == (1, 16)

    # a finished run is not retrained; another configuration in the same folder is refused
    again = Trainer(cfg, tmp_path / "full").fit()
    assert _curve(again) == _curve(full)
    from megapairs.configbase import ConfigError

    with pytest.raises(ConfigError, match="different configuration"):
        Trainer(tiny_config(clip_dir, triplets, lr=1e-2), tmp_path / "full").fit()


def test_grad_cache_in_trainer_keeps_the_curve(clip_dir, triplets, tmp_path):
    plain = Trainer(tiny_config(clip_dir, triplets, max_steps=2), tmp_path / "plain").fit()
    cached = Trainer(tiny_config(clip_dir, triplets, max_steps=2, grad_cache_chunk=5), tmp_path / "gc").fit()
    np.testing.assert_allclose(_curve(cached), _curve(plain), rtol=1e-4, atol=1e-5)


def test_schedule_warmup_then_linear_decay():
    lrs = [linear_schedule(s, 2, 10) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0] and lrs[2] == 1.0 and lrs[-1] == pytest.approx(0.125)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_config_defaults_and_validation():
    from megapairs.configbase import ConfigError
    from megapairs.train.config import TrainConfig

    cfg = TrainConfig()
    assert cfg.temperature == 0.02 and cfg.num_hard_negatives == 4
    assert cfg.resolve("clip", "cpu").lr == 5e-6 and cfg.resolve("offline", "cpu").lr == 1e-3
    gpu = cfg.resolve("clip", "cuda")
    assert gpu.amp == "bf16" and gpu.gradient_checkpointing is True
    assert cfg.resolve("clip", "cpu").amp == "no"
    with pytest.raises(ConfigError, match="temperature"):
        TrainConfig(temperature=0)
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({"learning_rate": 1})
    # grad-cache chunking and logging do not change the run's identity (a resume may change them)
    assert TrainConfig(grad_cache_chunk=64).config_hash() == cfg.config_hash()
    assert TrainConfig(lr=1e-5).config_hash() != cfg.config_hash()
