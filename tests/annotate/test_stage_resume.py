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
from megapairs.artifacts import open_complete
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
    assert (out / "part-00000.done").exists() and not (out / "part-00001.done").exists()
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


def test_a_run_written_by_fallbacks_stops_with_one_clear_line_and_keeps_its_shards(tmp_path: Path, server) -> None:
    from megapairs.annotate.quality import AnnotationDegraded

    pairs = make_run(tmp_path)
    server.control(script=["500"] * 200)  # every request fails: the template fallback writes all rows
    cfg = server_config(server.url, retries=0)
    with pytest.raises(AnnotationDegraded, match=r"12 of 12 rows \(100%\) were written by a fallback"):
        run_stage(AnnotateStage(tmp_path, cfg))
    art = tmp_path / "annotations"
    assert len(list(art.glob("part-*.parquet"))) == 4 and not (art / "manifest.json").exists()  # nothing lost
    # accepting the degraded run is an operational choice: the same shards, no new requests
    server.control(script=[])
    server.reset_log()
    manifest = run_stage(AnnotateStage(tmp_path, server_config(server.url, retries=0, max_fallback_share=1.0)))
    assert manifest["rows"] == len(pairs) and manifest["annotate"]["quality"]["fallback_share"] == 1.0
    assert answered(server) == []


def test_no_change_rows_are_dropped_not_restated(tmp_path: Path) -> None:
    # "red kite", "blue kite", "kite", ...: red -> blue states a colour change; blue -> (no colour
    # named) and (none) -> red state nothing (the plain test squares give no pixel evidence)
    pairs = make_run(tmp_path, captions=[["red kite", "blue kite", "kite"][i % 3] for i in range(16)])
    cfg = AnnotateConfig.from_dict({"describer": "changes:", "writer": "changes:", "describer_fallbacks": ["template:"],
                                    "shard_size": 4, **OPS})
    manifest = run_stage(AnnotateStage(tmp_path, cfg))
    rows = rows_of(tmp_path)
    assert len(rows) == len(pairs)
    # a "no describable difference" verdict does not fall back to the template describer
    assert {r["status"] for r in rows} <= {"no_change", "ok"} and any(r["status"] == "no_change" for r in rows)
    for r in rows:
        if r["status"] == "no_change":
            assert r["instructions"] == [] and "no describable difference" in r["reason"]
            assert r["describer_used"] == ""
    q = manifest["annotate"]["quality"]
    assert q["no_change"] == sum(r["status"] == "no_change" for r in rows) and q["failed"] == 0
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(r["writer_used"] == "changes:" and len(r["instructions"]) >= 3 for r in ok)
