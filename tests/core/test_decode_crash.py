"""A decode process that dies mid-run (killed for memory, a crash in a native decoder): the pool is
rebuilt and the batch decoded again, once; a second death is one clear RunFailure, and the shards
finished before it are kept. (Spawned children import this module to run the crashing decoders, so its
top-level imports stay light.)"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import megapairs.embed.decode as decode_mod

real_decode_rows = decode_mod.decode_rows


def crash_once(flag: str, rows: list[dict[str, Any]], *args: Any) -> Any:
    """The first call in any process (the flag file is created atomically) kills its process."""
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return real_decode_rows(rows, *args)
    os._exit(9)


def crash_on(name: str, rows: list[dict[str, Any]], *args: Any) -> Any:
    """Every call that holds the image `name` kills its process."""
    if any(name in str(r["uri"]) for r in rows):
        os._exit(9)
    return real_decode_rows(rows, *args)


def _images(folder: Path, n: int) -> list[dict[str, Any]]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
        (folder / f"{i:03d}.txt").write_text(f"picture number {i}")
        rows.append({"uri": str(path), "image_bytes": None})
    return rows


GEOMS = {"a": decode_mod.Geometry((16, 16), 16)}


def test_a_dead_decode_process_is_replaced_and_the_batch_decoded_again(tmp_path, monkeypatch, caplog) -> None:
    from megapairs.embed.config import EmbedConfig

    rows = _images(tmp_path / "img", 7)
    flag = tmp_path / "crashed"
    monkeypatch.setattr(decode_mod, "decode_rows", functools.partial(crash_once, str(flag)))
    d = decode_mod.Decoder(EmbedConfig(decode_mode="processes", decode_workers=2, batch_size=2), GEOMS)
    try:
        assert d.mode == "processes"
        got = [(chunk, b["a"]) for chunk, b in d.batches(rows)]
    finally:
        d.close()
    assert flag.exists(), "a decode process was killed"
    assert "a decode process died" in caplog.text
    assert [r for chunk, _ in got for r in chunk] == rows  # every batch, in order
    expected = np.stack([r["a"] for r in real_decode_rows(rows, GEOMS)])
    assert np.array_equal(np.concatenate([b for _, b in got]), expected)


def test_a_batch_that_kills_its_decoder_twice_fails_clearly_and_finished_shards_stay(
        tmp_path, monkeypatch, tiny_clip_dir, tiny_dino_dir) -> None:
    from megapairs.artifacts import Artifact
    from megapairs.corpus.config import IngestConfig
    from megapairs.corpus.stage import IngestStage
    from megapairs.embed.config import EmbedConfig
    from megapairs.embed.stage import EmbedStage
    from megapairs.errors import describe
    from megapairs.stages import run_stage

    _images(tmp_path / "img", 10)
    run_stage(IngestStage(tmp_path, IngestConfig(source=str(tmp_path / "img"), shard_size=5)))
    corpus = Artifact(tmp_path / "corpus")
    last = corpus.read_shard(max(corpus.done_shards()), columns=["uri"]).column("uri").to_pylist()
    bad = Path(last[2]).name  # the last shard's second batch: the first is innocent
    cfg = EmbedConfig(image=f"hf:{tiny_clip_dir}", visual=f"hf:{tiny_dino_dir}", caption=f"hf:{tiny_clip_dir}",
                      device="cpu", batch_size=2, decode_mode="processes", decode_workers=2)
    monkeypatch.setattr(decode_mod, "decode_rows", functools.partial(crash_on, bad))
    with pytest.raises(decode_mod.DecodeFailed) as e:
        run_stage(EmbedStage(tmp_path, cfg))
    code, line = describe(e.value)
    assert code == 1 and "died twice on the same batch" in line and bad in line
    assert Path(last[0]).name not in line  # the batch decoded alongside it is not blamed
    assert "embed.decode_mode=threads" in line and "rerun the same command to resume" in line
    emb = Artifact(tmp_path / "embeddings")
    kept = emb.done_shards()
    assert kept == sorted(set(corpus.done_shards()) - {max(corpus.done_shards())})  # all but the last
    markers = {i: emb.marker_path(i).stat().st_mtime_ns for i in kept}

    monkeypatch.setattr(decode_mod, "decode_rows", real_decode_rows)
    assert run_stage(EmbedStage(tmp_path, cfg))["rows"] == 10  # the rerun resumes
    assert {i: emb.marker_path(i).stat().st_mtime_ns for i in kept} == markers  # finished shards untouched
