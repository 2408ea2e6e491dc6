"""The two-step annotator end to end against a real local server: chains, fallbacks, cache replay."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from megapairs.annotate.annotator import ROW_FIELDS, Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import BackendUnavailable
from megapairs.annotate.roles import PairItem

CAPTIONS = [("a tabby cat asleep indoors", "cat", "a tabby cat on a garden fence", "cat"),
            ("a red apple on a plate", "apple", "a green apple cut in half", "apple"),
            ("a bus in a city street", "bus", "a bus turned into a cafe in a field", "bus"),
            ("a lighthouse by day", "lighthouse", "a lighthouse at night in fog", "lighthouse"),
            ("a guitar on a stage", "guitar", "a guitar leaning on a brick wall", "guitar")]


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (seed * 40 % 256, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


def items(n: int = 5, images: bool = False) -> list[PairItem]:
    out = []
    for i in range(n):
        sc, sl, tc, tl = CAPTIONS[i % len(CAPTIONS)]
        out.append(PairItem(f"q{i}", f"t{i}", sc, sl, tc, tl, png(i) if images else None,
                            png(i + 100) if images else None))
    return out


def config(url: str, **kw: Any) -> AnnotateConfig:
    base = {"describer": f"captions:openai-completions:{url}#m", "writer": f"openai-completions:{url}#m",
            "writer_mode": "list", "retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.02, "concurrency": 4, "progress": False}
    return AnnotateConfig.from_dict({**base, **kw})


def annotate(cfg: AnnotateConfig, its: list[PairItem], cache: Path | None = None) -> tuple[list[dict], dict]:
    with Annotator(cfg, cache_path=cache) as a:
        rows = a.annotate_sync(its)
        return rows, a.info()


def test_two_steps_from_captions(server) -> None:
    cfg = config(server.url)
    rows, info = annotate(cfg, items())
    assert [(r["query_id"], r["target_id"]) for r in rows] == [(f"q{i}", f"t{i}") for i in range(5)]
    for r, (_, _, tc, _) in zip(rows, CAPTIONS):
        assert set(r) == set(ROW_FIELDS)
        assert r["status"] == "ok" and not r["fallback"] and r["reason"] == "", r
        assert r["writer"] == cfg.writer and r["describer"] == cfg.describer
        assert r["describer_used"] == f"captions:openai-completions:{server.url}#m"
        assert r["writer_used"] == f"openai-completions:{server.url}#m"
        assert len(r["instructions"]) == 3 and all(tc in x for x in r["instructions"])
        assert r["description"].startswith("Shared:") and 60 <= r["word_limit"] <= 100
        assert len(r["demo_ids"]) == 5 and r["writer_attempts"] == 1
    assert all(e["endpoint"] == "completions" for e in server.requests())
    assert len(server.requests()) == 10 and info["usage"]["requests"] == 10
    again, _ = annotate(cfg, items())
    assert [r["word_limit"] for r in again] == [r["word_limit"] for r in rows]  # seeded per pair


def test_describer_looks_at_both_images(server) -> None:
    cfg = config(server.url, describer=f"openai:{server.url}#vlm")
    rows, info = annotate(cfg, items(2, images=True))
    assert all(r["status"] == "ok" for r in rows)
    describe = [e for e in server.requests() if e["endpoint"] == "chat"]
    assert len(describe) == 2 and all(e["images"] == 2 for e in describe)
    assert Annotator(cfg).needs_images


def test_missing_image_falls_back_to_template_describer(server) -> None:
    cfg = config(server.url, describer=f"openai:{server.url}#vlm")
    (row,), _ = annotate(cfg, items(1, images=False))
    assert row["status"] == "ok" and row["fallback"] and row["describer_used"] == "template:"
    assert "image missing" in row["reason"]


def test_empty_and_refusal_fall_back_to_template(server) -> None:
    server.control(script=["ok", "empty", "refusal"])  # describe ok, both writer attempts bad
    cfg = config(server.url, concurrency=1)
    (row,), _ = annotate(cfg, items(1))
    assert row["status"] == "ok" and row["fallback"] and row["writer_used"] == "template:"
    assert row["writer_attempts"] == 3 and len(row["instructions"]) == 3
    assert "try 1: no instructions in the output" in row["reason"] and "try 2: only 0 valid" in row["reason"]
    assert "refusal" in row["reason"]
    assert row["raw_output"].startswith("I'm sorry")  # the model's own output is kept for audits


def test_describer_refusal_and_request_errors(server) -> None:
    server.control(script=["refusal", "500", "500", "500"])  # describe refuses; the writer's request fails
    cfg = config(server.url, concurrency=1)
    (row,), _ = annotate(cfg, items(1))
    assert row["describer_used"] == "template:" and row["writer_used"] == "template:"
    assert "describe captions:" in row["reason"] and "refusal" in row["reason"] and "HTTP 500" in row["reason"]


def test_failures_are_rows(server) -> None:
    cfg = config(server.url, describer="template:", writer="template:")
    its = items(2) + [PairItem("q9", "t9")]
    rows, _ = annotate(cfg, its)
    assert len(rows) == 3 and rows[2]["status"] == "describe_failed" and rows[2]["instructions"] == []
    assert "no caption or label" in rows[2]["reason"]
    assert rows[0]["status"] == "ok" and rows[0]["writer_used"] == "template:" and not rows[0]["fallback"]
    assert server.requests() == []


def test_cache_replay_sends_nothing(server, tmp_path: Path) -> None:
    cfg = config(server.url)
    first, _ = annotate(cfg, items(), tmp_path / "cache.sqlite")
    n = len(server.requests())
    assert n == 10
    second, info = annotate(cfg, items(), tmp_path / "cache.sqlite")
    assert len(server.requests()) == n  # zero requests on the rerun
    assert info["usage"]["cache_hits"] == 10 and info["usage"]["requests"] == 0
    assert second == first


def test_unavailable_backend_is_skipped_and_recorded(server, tmp_path: Path) -> None:
    cfg = config(server.url, writer=f"llamacpp:{tmp_path / 'absent.gguf'}")
    rows, info = annotate(cfg, items(2))
    assert list(info["unavailable"]) == [f"llamacpp:{tmp_path / 'absent.gguf'}"]
    assert info["writers"] == ["template:"]
    assert all(r["status"] == "ok" and r["fallback"] and r["writer_used"] == "template:" for r in rows)
    assert all("unavailable llamacpp:" in r["reason"] for r in rows)
    with pytest.raises(BackendUnavailable, match="no model file"):
        Annotator(config(server.url, writer=f"llamacpp:{tmp_path / 'absent.gguf'}", strict_backends=True))


def test_write_failure_is_a_row(server) -> None:
    server.control(script=["ok", "refusal"])  # no template fallback configured for the writer
    cfg = config(server.url, concurrency=1, writer_fallbacks=[], writer_attempts=1)
    (row,), _ = annotate(cfg, items(1))
    assert row["status"] == "write_failed" and row["instructions"] == [] and row["description"]
    assert "refusal" in row["reason"] and row["rejected"][0].startswith("refusal: ")
