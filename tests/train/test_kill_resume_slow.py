"""A real SIGKILL mid-run (a separate process), then a rerun: the loss curve equals a clean run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _cmd(clip_dir, triplets, out):
    return [sys.executable, "-m", "megapairs.train", "--data", str(triplets), "--model", f"clip:{clip_dir}",
            "--out", str(out), "max_steps=30", "batch_size=4", "lr=1e-3", "save_every=5", "log_every=1",
            "num_workers=1", "device=cpu", "num_hard_negatives=3"]


def _curve(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r["step"] for r in rows if "loss" in r]


def test_sigkill_then_resume_matches_clean_run(clip_dir, triplets, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    subprocess.run(_cmd(clip_dir, triplets, tmp_path / "clean"), check=True, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(clip_dir, triplets, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pointer = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pointer.exists() and pointer.read_text().strip() >= "step-00000010":
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists()
    subprocess.run(_cmd(clip_dir, triplets, out), check=True, env=env, capture_output=True)

    clean, clean_steps = _curve(tmp_path / "clean")
    resumed, steps = _curve(out)
    assert steps == clean_steps == list(range(1, 31))
    np.testing.assert_allclose(resumed, clean, rtol=1e-5, atol=1e-6)
