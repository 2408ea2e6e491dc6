"""Line mode (one instruction per request, for base models) against the fake OpenAI-compatible server:
requests per pair, sampling, dedupe, template fill of the missing ones, cache replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from megapairs.annotate.annotator import ROW_FIELDS, Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.roles import PairItem
from megapairs.configbase import ConfigError

from .test_annotator import CAPTIONS


def items(n: int = 3) -> list[PairItem]:
    return [PairItem(f"q{i}", f"t{i}", *CAPTIONS[i % len(CAPTIONS)]) for i in range(n)]


def config(url: str, **kw: Any) -> AnnotateConfig:
    base = {"describer": "template:", "writer": f"openai-completions:{url}#base", "retries": 1,
            "backoff_s": 0.01, "backoff_max_s": 0.02, "concurrency": 4, "progress": False}
    return AnnotateConfig.from_dict({**base, **kw})


def run(cfg: AnnotateConfig, its: list[PairItem], cache: Path | None = None) -> tuple[list[dict], dict]:
    with Annotator(cfg, cache_path=cache) as a:
        return a.annotate_sync(its), a.info()


def test_auto_picks_line_mode_for_completions_and_list_for_chat(server) -> None:
    rows, info = run(config(server.url), items())
    spec = f"openai-completions:{server.url}#base"
    assert info["writer_modes"] == {spec: "line", "template:": "template"}
    reqs = server.requests()
    assert len(reqs) == 3 * (3 + 2)  # min_instructions + line_spare per pair, nothing else
    assert all(r["line"] and r["endpoint"] == "completions" for r in reqs)
    assert all(r["stop"] == ["\n"] and r["max_tokens"] == 32 and r["temperature"] == 0.7 for r in reqs)
    assert len({r["seed"] for r in reqs}) == len(reqs)  # a seed per request
    assert all(r["tail"].rstrip().rsplit("\n", 1)[-1].startswith("Instruction: ") for r in reqs)
    for r, (_, _, target, _) in zip(rows, CAPTIONS):
        assert set(r) == set(ROW_FIELDS)
        assert r["status"] == "ok" and not r["fallback"] and r["writer_used"] == spec, r
        assert len(r["instructions"]) == 5 and all(target in x for x in r["instructions"])
        assert r["instruction_writers"] == [spec] * 5 and r["template_filled"] == 0
        assert r["description"].startswith("Both images show") and "whereas the target image shows" in r["description"]
        assert r["writer_attempts"] == 1 and len(r["raw_output"].splitlines()) == 5
        assert len(set(r["instructions"])) == 5  # the openers differ within a pair
    server.reset_log()
    chat_rows, info = run(config(server.url, writer=f"openai:{server.url}#instruct"), items(2))
    assert info["writer_modes"][f"openai:{server.url}#instruct"] == "list"
    assert len(server.requests()) == 2 and all(r["endpoint"] == "chat" for r in server.requests())
    assert all(r["status"] == "ok" and r["template_filled"] == 0 for r in chat_rows)


def test_writer_mode_can_be_forced(server) -> None:
    rows, info = run(config(server.url, writer_mode="list", describer=f"captions:openai-completions:{server.url}#m"),
                     items(1))
    assert list(info["writer_modes"].values())[0] == "list"
    assert [r["line"] for r in server.requests()] == [False, False]  # describe + one list request
    with pytest.raises(ConfigError, match="writer_mode"):
        config(server.url, writer_mode="lines")


def test_dedupe_across_requests(server) -> None:
    # 8 requests but 6 openers: requests 7 and 8 repeat the openers of 1 and 2, and the server answers
    # the same text whatever the seed, so they come back as duplicates.
    server.control(script=["const"] * 8)
    cfg = config(server.url, concurrency=1, line_spare=5, max_instructions=8)
    (row,), _ = run(cfg, items(1))
    assert len(server.requests()) == 8
    assert row["status"] == "ok" and len(row["instructions"]) == 6
    assert [x.split(":")[0] for x in row["rejected"]] == ["duplicate", "duplicate"]
    assert "rejected duplicate x2" in row["reason"]


def test_missing_instructions_are_filled_by_the_template(server) -> None:
    server.control(script=["refusal", "empty", "long", "ok", "ok"])
    cfg = config(server.url, concurrency=1, writer_attempts=1)
    (row,), _ = run(cfg, items(1))
    spec = f"openai-completions:{server.url}#base"
    assert row["status"] == "ok" and row["fallback"]
    assert row["writer_used"] == f"template:+{spec}"
    assert row["instruction_writers"] == [spec, spec, "template:"] and row["template_filled"] == 1
    assert all("take" in x for x in row["instructions"][:2])  # the two model-written ones come first
    why = sorted(x.split(":")[0] for x in row["rejected"])
    assert why == ["empty", "refusal", "too_long"]  # an opener alone is empty; "long" was cut off
    assert "only 2 valid of" in row["reason"]


def test_second_attempt_asks_only_for_the_missing_ones(server) -> None:
    server.control(script=["refusal", "refusal", "refusal", "ok", "ok", "ok"])
    cfg = config(server.url, concurrency=1, writer_attempts=2)
    (row,), _ = run(cfg, items(1))
    assert len(server.requests()) == 5 + 1
    assert row["writer_used"] == f"openai-completions:{server.url}#base" and row["template_filled"] == 0
    assert len(row["instructions"]) == 3 and row["writer_attempts"] == 2 and not row["fallback"]


def test_all_requests_failing_gives_a_template_row(server) -> None:
    server.control(script=["refusal"] * 10)
    (row,), _ = run(config(server.url, concurrency=1), items(1))
    assert row["writer_used"] == "template:" and row["template_filled"] == 3
    assert row["instruction_writers"] == ["template:"] * 3 and row["writer_attempts"] == 3


def test_cache_replays_every_line_request(server, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    cfg = config(server.url)
    first, _ = run(cfg, items(), cache)
    n = len(server.requests())
    assert n == 15
    again, info = run(cfg, items(), cache)
    assert len(server.requests()) == n and info["usage"]["requests"] == 0 and info["usage"]["cache_hits"] == n
    assert again == first
    # Sampling settings and the mode are part of the key: changing them asks the server again.
    run(config(server.url, line_temperature=0.9), items(1), cache)
    assert len(server.requests()) == n + 5
    run(config(server.url, writer_mode="list"), items(1), cache)
    assert len(server.requests()) == n + 6


def test_endpoint_url_is_not_part_of_the_key(server_factory, tmp_path: Path) -> None:
    a, b = server_factory(), server_factory()
    cache = tmp_path / "cache.sqlite"
    first, _ = run(config(a.url), items(2), cache)
    second, info = run(config(b.url), items(2), cache)
    assert b.requests() == [] and info["usage"]["cache_hits"] == 10
    drop = ("writer", "writer_used", "instruction_writers")  # the specs name the URL
    assert [{k: v for k, v in r.items() if k not in drop} for r in first] == \
        [{k: v for k, v in r.items() if k not in drop} for r in second]


def test_one_failed_request_does_not_sink_the_others(server) -> None:
    server.control(script=["400", "ok", "ok", "ok", "ok"])  # a 4xx is not retried
    (row,), _ = run(config(server.url, concurrency=1), items(1))
    assert row["writer_used"] == f"openai-completions:{server.url}#base" and len(row["instructions"]) == 4
    assert [x.split(":")[0] for x in row["rejected"]] == ["request_failed"] and "HTTP 400" in row["rejected"][0]


def test_server_down_stops_the_run(server_factory) -> None:
    from megapairs.annotate.llm import BackendError

    dead = server_factory(die_after=2)
    with pytest.raises(BackendError) as ei:
        run(config(dead.url, concurrency=1), items(1))
    assert ei.value.unavailable
