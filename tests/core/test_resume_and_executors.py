"""Crash and resume (SIGKILL mid-stage), config lineage, and Local vs Ray executors."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from megapairs.artifacts import Artifact
from megapairs.cli import main
from tests.conftest import make_image_folder
from tests.core.helpers import run_fingerprint, start_run_until_shards


def _cli(run: Path, source: Path, overrides: list[str], *extra: str) -> list[str]:
    return ["run", "--run", str(run), "--until", "mine", "--no-report", "--preset", "tiny",
            f"ingest.source={source}", "ingest.shard_size=4", "mine.query_shard_size=5", *overrides, *extra]


def test_sigkill_mid_stage_then_resume_equals_uninterrupted(tmp_path, tiny_overrides):
    source = make_image_folder(tmp_path / "images", n_per=2)  # 24 images -> 6 shards per stage
    clean = tmp_path / "clean"
    assert main(_cli(clean, source, tiny_overrides)) == 0

    crashed = tmp_path / "crashed"
    embed_dir = crashed / "embeddings"
    proc = start_run_until_shards(_cli(crashed, source, tiny_overrides), embed_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(Artifact(embed_dir).done_shards())
    assert 2 <= done < 6 and not Artifact(embed_dir).is_complete(), "the kill must land mid-stage"

    assert main(_cli(crashed, source, tiny_overrides)) == 0  # resume
    assert run_fingerprint(crashed) == run_fingerprint(clean)


def test_rerun_with_other_config_refuses_to_mix(tmp_path, tiny_overrides, capsys):
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    assert main(_cli(run, source, tiny_overrides)) == 0
    before = run_fingerprint(run)
    assert main(_cli(run, source, tiny_overrides + ["mine.k=3"])) == 2
    assert "different configuration" in capsys.readouterr().err
    assert run_fingerprint(run) == before  # nothing was touched
    assert main(_cli(run, source, tiny_overrides + ["mine.k=3"], "--overwrite")) == 0
    assert run_fingerprint(run)["pairs"] != before["pairs"]
    assert run_fingerprint(run)["embeddings"] == before["embeddings"]  # upstream untouched


def test_batch_size_change_on_resume_is_allowed(tmp_path, tiny_overrides):
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    assert main(_cli(run, source, tiny_overrides)) == 0
    assert main(_cli(run, source, tiny_overrides + ["embed.batch_size=3"])) == 0


@pytest.mark.ray
def test_local_and_ray_executors_write_identical_artifacts(tmp_path, tiny_overrides):
    pytest.importorskip("ray")
    source = make_image_folder(tmp_path / "images", n_per=2)
    assert main(_cli(tmp_path / "local", source, tiny_overrides)) == 0
    assert main(_cli(tmp_path / "ray", source, tiny_overrides, "--executor", "ray")) == 0
    import ray

    ray.shutdown()
    assert run_fingerprint(tmp_path / "ray") == run_fingerprint(tmp_path / "local")
