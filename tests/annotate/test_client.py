"""The OpenAI-compatible client against a real local HTTP server: endpoints, images, retries."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from megapairs.annotate.cache import RequestCache
from megapairs.annotate.client import CachedGenerator, UsageStats
from megapairs.annotate.llamacpp import free_port
from megapairs.annotate.llm import BackendError, GenOptions, GenRequest, build_generator

FAST = GenOptions(retries=3, backoff_s=0.01, backoff_max_s=0.05, timeout_s=10)


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def gen(server_url: str, kind: str = "openai", **kw):
    opts = GenOptions(**{**FAST.__dict__, **kw})
    return build_generator(f"{kind}:{server_url}#test-model", opts)


def run(g, req: GenRequest):
    async def go():
        try:
            return await g.generate(req)
        finally:
            await g.aclose()

    return asyncio.run(go())


def test_chat_with_inline_images(server) -> None:
    g = gen(server.url)
    req = GenRequest(prompt="describe", images=(png((255, 0, 0)), png((0, 0, 255))), image_labels=("A:", "B:"))
    res = run(g, req)
    assert res.text.startswith("Shared:") and res.prompt_tokens > 0 and res.completion_tokens > 0
    (entry,) = server.requests()
    assert entry["endpoint"] == "chat" and entry["images"] == 2


def test_completions_endpoint_and_api_key(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    res = run(gen(server.url, "openai-completions"), GenRequest(prompt="Note: x\nRequests: ["))
    assert res.text.startswith('"')  # the continuation of the open list
    run(gen(server.url, api_key="from-config"), GenRequest(prompt="hi"))
    a, b = server.requests()
    assert a["endpoint"] == "completions" and a["auth"] == "Bearer from-env"
    assert b["endpoint"] == "chat" and b["auth"] == "Bearer from-config"


def test_completions_endpoint_refuses_images(server) -> None:
    g = gen(server.url, "openai-completions")
    assert not g.supports_images
    with pytest.raises(BackendError, match="no images"):
        run(g, GenRequest(prompt="x", images=(png((1, 2, 3)),)))


def test_transient_errors_are_retried(server) -> None:
    server.control(script=["429", "500", "malformed", "nochoices", "ok"])
    g = gen(server.url, retries=4)
    res = run(g, GenRequest(prompt="hello"))
    assert res.text
    assert [e["mode"] for e in server.requests()] == ["429", "500", "malformed", "nochoices", "ok"]
    assert g.retries_done == 4


def test_exhausted_retries_per_request_error(server) -> None:
    server.control(script=["500"] * 3)
    with pytest.raises(BackendError) as ei:
        run(gen(server.url, retries=2), GenRequest(prompt="hello"))
    assert ei.value.status == 500 and not ei.value.unavailable
    assert len(server.requests()) == 3


def test_overloaded_server_is_unavailable(server) -> None:
    server.control(script=["503"] * 2)
    with pytest.raises(BackendError) as ei:
        run(gen(server.url, retries=1), GenRequest(prompt="hello"))
    assert ei.value.unavailable and ei.value.status == 503


def test_client_error_is_not_retried(server) -> None:
    server.control(script=["400"])
    with pytest.raises(BackendError) as ei:
        run(gen(server.url), GenRequest(prompt="hello"))
    assert ei.value.status == 400 and len(server.requests()) == 1


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError) as ei:
        run(gen(url, retries=2), GenRequest(prompt="hello"))
    assert ei.value.unavailable and "ConnectError" in str(ei.value)


def test_timeout_is_unavailable(server) -> None:
    server.control(script=["hang"])
    with pytest.raises(BackendError) as ei:
        run(gen(server.url, retries=0, timeout_s=0.5), GenRequest(prompt="hello"))
    assert ei.value.unavailable and "Timeout" in str(ei.value)


def test_cache_replays_identical_requests(server, tmp_path: Path) -> None:
    stats = UsageStats()
    cache = RequestCache(tmp_path / "c.sqlite")
    g = CachedGenerator(gen(server.url), cache, concurrency=2, stats=stats)
    req = GenRequest(prompt="same", images=(png((9, 9, 9)),), seed=3, tag="v1/x")
    first, second = run(g, req), run(g, req)
    assert first.text == second.text and not first.cached and second.cached
    assert len(server.requests()) == 1 and stats.requests == 1 and stats.cache_hits == 1
    other = GenRequest(prompt="same", images=(png((9, 9, 8)),), seed=3, tag="v1/x")  # another image
    assert req.cache_key("m") != other.cache_key("m") != GenRequest(prompt="same", seed=4).cache_key("m")
    cache.close()
    again = RequestCache(tmp_path / "c.sqlite")  # survives a restart
    assert again.get(req.cache_key(g.model_id)) is not None and len(again) == 1
