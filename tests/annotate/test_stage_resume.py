"""The annotations stage, and crash/resume: a server killed mid-run, then a rerun that neither loses
a pair nor asks the server again for anything it had already answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from megapairs.annotate.annotator import Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import BackendError
from megapairs.annotate.roles import PairItem
from megapairs.annotate.stage import SCHEMA, AnnotateStage
from megapairs.artifacts import Artifact, open_complete
from megapairs.stages import run_stage

from .helpers import make_run

OPS = {"retries": 1, "backoff_s": 0.01, "backoff_max_s": 0.02, "concurrency": 2, "progress": False}


def server_config(url: str, **kw: Any) -> AnnotateConfig:
    return AnnotateConfig.from_dict({"describer": f"captions:openai-completions:{url}#m",
                                     "writer": f"openai-completions:{url}#m", "writer_mode": "list", "shard_size": 4,
                                     **OPS, **kw})


def answered(server) -> list[str]:
    return [e["key"] for e in server.requests() if e["answered"]]


def rows_of(root: Path) -> list[dict[str, Any]]:
    return open_complete(root / "annotations").read_all().to_pylist()


def test_stage_with_template_backends(tmp_path: Path) -> None:
    pairs = make_run(tmp_path)
    cfg = AnnotateConfig.from_dict({"describer": "template:", "writer": "template:", "shard_size": 4, **OPS})
    manifest = run_stage(AnnotateStage(tmp_path, cfg))
    assert manifest["rows"] == len(pairs) and manifest["num_shards"] == 4  # 7 -> 4+3, 5 -> 4+1
    table = open_complete(tmp_path / "annotations").read_all()
    assert table.schema.equals(SCHEMA)
    rows = table.to_pylist()
    assert [(r["query_id"], r["target_id"]) for r in rows] == pairs
    assert all(r["status"] == "ok" and len(r["instructions"]) == 3 for r in rows)
    assert rows[0]["hard_negatives"][0] == rows[0]["query_id"]  # pairs columns pass through
    info = manifest["annotate"]
    assert info["status"] == {"ok": len(pairs)} and info["writer_used"] == {"template:": len(pairs)}
    assert run_stage(AnnotateStage(tmp_path, cfg))["rows"] == len(pairs)  # complete: a no-op


def test_stage_reads_images_for_a_pixel_describer(tmp_path: Path, server) -> None:
    make_run(tmp_path, pairs_per_shard=(3,))
    cfg = server_config(server.url, describer=f"openai:{server.url}#vlm", image_max_side=32)
    run_stage(AnnotateStage(tmp_path, cfg))
    describe = [e for e in server.requests() if e["endpoint"] == "chat"]
    assert len(describe) == 3 and all(e["images"] == 2 for e in describe)
    assert all(r["status"] == "ok" and not r["fallback"] for r in rows_of(tmp_path))


def test_annotator_resumes_after_server_death(tmp_path: Path, server_factory) -> None:
    items = [PairItem(f"q{i}", f"t{i}", f"a cat number {i}", "cat", f"a dog number {i}", "dog") for i in range(10)]
    first = server_factory(die_after=7)
    cache = tmp_path / "cache.sqlite"
    with pytest.raises(BackendError) as ei:
        with Annotator(server_config(first.url), cache_path=cache) as a:
            a.annotate_sync(items)
    assert ei.value.unavailable
    done_first = answered(first)
    assert len(done_first) == 7
    second = server_factory()  # another port: the URL is not part of the cache key
    with Annotator(server_config(second.url), cache_path=cache) as a:
        rows = a.annotate_sync(items)
        assert a.stats.cache_hits == 7 and a.stats.requests == 13
    assert not set(done_first) & set(answered(second))  # nothing answered twice
    assert len(done_first) + len(answered(second)) == 20  # 10 pairs x (describe + write)
    assert [(r["query_id"], r["status"]) for r in rows] == [(f"q{i}", "ok") for i in range(10)]


def test_stage_resumes_after_server_death(tmp_path: Path, server_factory) -> None:
    pairs = make_run(tmp_path / "crash")
    make_run(tmp_path / "clean")
    first = server_factory(die_after=10)  # dies inside the second shard (8 requests per full shard)
    with pytest.raises(BackendError):
        run_stage(AnnotateStage(tmp_path / "crash", server_config(first.url)))
    out = tmp_path / "crash" / "annotations"
    assert Artifact(out).done_shards() == [0]
    assert not (out / "part-00001.parquet").exists()  # no half-written shard
    second = server_factory()
    manifest = run_stage(AnnotateStage(tmp_path / "crash", server_config(second.url)))
    assert not set(answered(first)) & set(answered(second))
    assert len(answered(first)) + len(answered(second)) == 2 * len(pairs)
    rows = rows_of(tmp_path / "crash")
    assert [(r["query_id"], r["target_id"]) for r in rows] == pairs  # none lost, none twice
    assert manifest["annotate"]["status"] == {"ok": len(pairs)}
    usage = manifest["annotate"]["usage"]  # shard 0 from the first run, the rest from the second
    assert usage["requests"] == 8 + len(answered(second)) and usage["cache_hits"] == len(answered(first)) - 8
    # The resumed artifact holds what an uninterrupted run writes (endpoint URLs aside).
    clean = server_factory()
    run_stage(AnnotateStage(tmp_path / "clean", server_config(clean.url)))
    drop = {"describer", "writer", "describer_used", "writer_used", "instruction_writers"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in drop} for r in rs]  # noqa: E731
    assert strip(rows) == strip(rows_of(tmp_path / "clean"))
    assert pq.read_schema(out / "part-00000.parquet").equals(SCHEMA)
