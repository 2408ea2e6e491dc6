"""Artifact folders as others read them: umask permissions, plain Parquet readers, old layouts."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from megapairs.artifacts import DONE_DIR, LEGACY_LINEAGE, LEGACY_MANIFEST, LINEAGE, MANIFEST, Artifact
from megapairs.cli import main
from megapairs.embed.store import VECTORS_DIR, load_embeddings
from tests.conftest import make_image_folder
from tests.core.helpers import run_fingerprint


@pytest.fixture
def mined(tmp_path, tiny_overrides, capsys) -> tuple[Path, list[str]]:
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    args = ["run", "--run", str(run), "--preset", "tiny", "--until", "mine", f"ingest.source={source}", *tiny_overrides]
    old = os.umask(0o027)
    try:
        assert main(args) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    return run, args


def test_files_honour_the_umask(mined) -> None:
    run, _ = mined
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) > 20
    modes = {str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o640}, {k: oct(v) for k, v in modes.items() if v != 0o640}


@pytest.mark.parametrize("name", ["corpus", "embeddings", "pairs"])
def test_artifact_folders_read_as_parquet_datasets(mined, name, tmp_path, monkeypatch) -> None:
    run, _ = mined
    rows = Artifact(run / name).manifest()["rows"]
    assert pq.read_table(run / name).num_rows == rows
    assert pads.dataset(run / name, format="parquet").count_rows() == rows
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    loaded = datasets.load_dataset("parquet", data_dir=str(run / name), cache_dir=str(tmp_path / "hf"))
    assert loaded["train"].num_rows == rows


def _to_legacy(folder: Path) -> None:
    """Put a folder back into the megapairs 0.1 layout (bookkeeping and vectors beside the shards)."""
    for marker in (folder / DONE_DIR).glob("*.json"):
        marker.rename(folder / f"{marker.stem}.done")
    (folder / MANIFEST).rename(folder / LEGACY_MANIFEST)
    (folder / LINEAGE).rename(folder / LEGACY_LINEAGE)
    if (folder / VECTORS_DIR).is_dir():
        for view in (folder / VECTORS_DIR).iterdir():
            view.rename(folder / view.name)
        (folder / VECTORS_DIR).rmdir()
    shutil.rmtree(folder / ".megapairs")


def test_old_run_folders_still_read_and_resume(mined, capsys) -> None:
    run, args = mined
    before = run_fingerprint(run)
    ids, mats = load_embeddings(run / "embeddings")
    for name in ("corpus", "embeddings", "pairs"):
        _to_legacy(run / name)
    assert (run / "embeddings" / "image").is_dir() and not (run / "pairs" / ".megapairs").exists()
    old_ids, old_mats = load_embeddings(run / "embeddings")  # 0.1 vectors still found
    assert old_ids == ids and all((old_mats[v] == mats[v]).all() for v in mats)
    assert main(["status", str(run)]) == 0
    assert "pairs        complete" in capsys.readouterr().out
    assert main(args) == 0  # resumes: nothing redone, the same artifacts
    assert "already complete" not in capsys.readouterr().out
    assert Artifact(run / "pairs").is_complete() and (run / "pairs" / LINEAGE).exists()
    after = {n: {k: v for k, v in fp.items() if "lineage" not in k} for n, fp in run_fingerprint(run).items()}
    strip = {n: {k: v for k, v in fp.items() if "lineage" not in k} for n, fp in before.items()}
    assert {n: sorted(fp.values()) for n, fp in after.items()} == {n: sorted(fp.values()) for n, fp in strip.items()}


def test_inspect_an_exported_dataset(tmp_path, capsys) -> None:
    import json

    from megapairs.export import ExportConfig, ExportStage
    from megapairs.stages import run_stage
    from tests.export.conftest import make_run

    make_run(tmp_path / "run")
    run_stage(ExportStage(tmp_path / "run", ExportConfig(val_fraction=0.25, shard_size=3)))
    assert main(["inspect", str(tmp_path / "run" / "dataset"), "-n", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["manifest"]["kind"] == "dataset" and len(data["rows"]) == 2
    assert {"q_img", "q_text", "t_img", "hns"} <= set(data["rows"][0])
