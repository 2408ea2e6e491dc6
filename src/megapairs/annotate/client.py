"""Async OpenAI-compatible client (httpx) with retries and backoff, plus the caching wrapper that
every generator goes through: bounded concurrency, disk cache, token and request counts."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import random
from dataclasses import dataclass
from typing import Any

import httpx

from megapairs.annotate.cache import RequestCache
from megapairs.annotate.llm import GENERATORS, BackendError, GenOptions, GenRequest, GenResult, Generator
from megapairs.registry import SpecError

# Statuses that mean the server (not this request) is in trouble: retried, then the run stops.
UNAVAILABLE_STATUS = {429, 502, 503, 504}
# Statuses worth retrying that concern the request; after the retries the row falls back.
RETRY_STATUS = {408, 409, 425, 500}


class _LoopLocal:
    """Holds an object created for the running event loop; rebuilt when the loop changes
    (each shard may run under its own `asyncio.run`)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._loop: asyncio.AbstractEventLoop | None = None
        self._obj: Any = None

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._obj = loop, self._make()
        return self._obj

    def current(self) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._obj if self._loop is loop else None


def parse_openai_spec(arg: str) -> tuple[str, str]:
    """`http://HOST:PORT/v1#MODEL` -> (base_url, model)."""
    url, _, model = arg.partition("#")
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SpecError(f"openai spec needs an http(s) URL, e.g. openai:http://127.0.0.1:8000/v1#MODEL; got {arg!r}")
    return url, model.strip()


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _part_text(part: Any, where: str) -> str:
    """The text of one content part; parts of other types (images, audio) contribute nothing."""
    if not isinstance(part, dict):
        raise ValueError(f"{where} is {type(part).__name__}, not an object")
    if part.get("type", "text") != "text":
        return ""
    text = part.get("text", "")
    if not isinstance(text, str):
        raise ValueError(f"{where}.text is {type(text).__name__}, not text")
    return text


def _count(usage: dict[str, Any], name: str) -> int:
    """A token count from `usage`: a non-negative integer, or absent / null (counted as 0)."""
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise ValueError(f"usage.{name} is {value!r}, not a token count")
    return int(value)


class OpenAICompatGenerator:
    """Talks to `/chat/completions` (default) or `/completions` (`api="completions"`)."""

    def __init__(self, base_url: str, model: str, *, api: str = "chat", options: GenOptions | None = None,
                 spec: str = "") -> None:
        self.base_url = base_url
        self.model = model
        self.api = api
        self.options = options or GenOptions()
        self.spec = spec or f"openai:{base_url}#{model}"
        self.model_id = f"{api}:{model or base_url}"
        self.supports_images = api == "chat"
        self.api_key = self.options.api_key or os.environ.get("OPENAI_API_KEY", "")
        self._client = _LoopLocal(self._new_client)
        self.retries_done = 0

    def _new_client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=max(4, self.options.concurrency * 2))
        return httpx.AsyncClient(timeout=self.options.timeout_s, headers=headers, limits=limits)

    def body(self, req: GenRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model or "default", "max_tokens": req.max_tokens,
                                "temperature": req.temperature, "top_p": req.top_p}
        if req.seed is not None:
            body["seed"] = req.seed
        if req.stop:
            body["stop"] = list(req.stop)[:4]
        if self.api == "completions":
            if req.images:
                raise BackendError(f"{self.spec}: the completions endpoint takes no images")
            body["prompt"] = req.prompt
            return body
        if req.images:
            parts: list[dict[str, Any]] = []
            labels = list(req.image_labels) + [""] * (len(req.images) - len(req.image_labels))
            for label, png in zip(labels, req.images):
                if label:
                    parts.append({"type": "text", "text": label})
                parts.append({"type": "image_url", "image_url": {"url": _data_url(png)}})
            parts.append({"type": "text", "text": req.prompt})
            body["messages"] = [{"role": "user", "content": parts}]
        else:
            body["messages"] = [{"role": "user", "content": req.prompt}]
        return body

    def parse(self, data: Any) -> GenResult:
        """The generated text and token counts of a reply; ValueError naming the first field whose
        type is not what the OpenAI API defines (the caller turns it into a failure row)."""
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            raise ValueError("no choices in the response")
        choice = data["choices"][0]
        if not isinstance(choice, dict):
            raise ValueError(f"choices[0] is {type(choice).__name__}, not an object")
        if self.api == "completions":
            text = choice.get("text")
            where = "choices[0].text"
        else:
            msg = choice.get("message")
            if not isinstance(msg, dict):
                raise ValueError("choices[0] has no message object")
            text = msg.get("content")
            where = "choices[0].message.content"
            if isinstance(text, list):  # content parts
                text = "".join(_part_text(p, f"{where}[{i}]") for i, p in enumerate(text))
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise ValueError(f"{where} is {type(text).__name__}, not text")
        usage = data.get("usage")
        if usage is None:
            usage = {}
        if not isinstance(usage, dict):
            raise ValueError(f"usage is {type(usage).__name__}, not an object")
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise ValueError(f"choices[0].finish_reason is {type(finish).__name__}, not text")
        return GenResult(text=text, prompt_tokens=_count(usage, "prompt_tokens"),
                         completion_tokens=_count(usage, "completion_tokens"), finish_reason=finish or "")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        o = self.options
        if retry_after:
            try:
                return min(o.backoff_max_s, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(o.backoff_max_s, o.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

    async def generate(self, request: GenRequest) -> GenResult:
        client: httpx.AsyncClient = self._client.get()
        url = f"{self.base_url}/{'completions' if self.api == 'completions' else 'chat/completions'}"
        body = self.body(request)
        err: BackendError | None = None
        for attempt in range(self.options.retries + 1):
            retry_after = None
            try:
                resp = await client.post(url, json=body)
            except httpx.TransportError as e:
                err = BackendError(f"{self.spec}: {type(e).__name__}: {e or 'no detail'}", unavailable=True)
            else:
                status = resp.status_code
                if status == 200:
                    try:
                        return self.parse(resp.json())
                    except ValueError as e:
                        err = BackendError(f"{self.spec}: malformed response: {e}")
                elif status in UNAVAILABLE_STATUS or status in RETRY_STATUS or status > 500:
                    retry_after = resp.headers.get("retry-after")
                    err = BackendError(f"{self.spec}: HTTP {status}: {resp.text[:200]}",
                                       unavailable=status in UNAVAILABLE_STATUS, status=status)
                else:
                    raise BackendError(f"{self.spec}: HTTP {status}: {resp.text[:300]}", status=status)
            if attempt < self.options.retries:
                self.retries_done += 1
                await asyncio.sleep(self._delay(attempt, retry_after))
        assert err is not None
        raise err

    async def aclose(self) -> None:
        client = self._client.current()
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        pass


@GENERATORS.register("openai", check=parse_openai_spec)
def _openai(arg: str, options: GenOptions) -> Generator:
    url, model = parse_openai_spec(arg)
    return OpenAICompatGenerator(url, model, api="chat", options=options, spec=f"openai:{arg}")


@GENERATORS.register("openai-completions", check=parse_openai_spec)
def _openai_completions(arg: str, options: GenOptions) -> Generator:
    url, model = parse_openai_spec(arg)
    return OpenAICompatGenerator(url, model, api="completions", options=options, spec=f"openai-completions:{arg}")


@dataclass
class UsageStats:
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class CachedGenerator:
    """Wraps a generator: replay from the disk cache, else call it under a concurrency bound and
    store the result. Only successful generations are stored; failures are retried on a rerun."""

    def __init__(self, inner: Generator, cache: RequestCache, concurrency: int, stats: UsageStats) -> None:
        self.inner = inner
        self.cache = cache
        self.stats = stats
        self.spec = inner.spec
        self.model_id = inner.model_id
        self.supports_images = inner.supports_images
        self.api = getattr(inner, "api", "chat")  # "completions" for base-model endpoints
        self._sem = _LoopLocal(lambda: asyncio.Semaphore(concurrency))

    async def generate(self, request: GenRequest) -> GenResult:
        key = request.cache_key(self.model_id)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return GenResult(**{**hit, "cached": True})
        async with self._sem.get():
            try:
                result = await self.inner.generate(request)
            except BackendError:
                self.stats.failures += 1
                raise
        self.stats.requests += 1
        self.stats.prompt_tokens += result.prompt_tokens
        self.stats.completion_tokens += result.completion_tokens
        # The write is fsynced (a few ms): off the event loop, so the next request goes out meanwhile.
        await asyncio.to_thread(self.cache.put, key,
                                {k: v for k, v in dataclasses.asdict(result).items() if k != "cached"},
                                model=self.model_id, tag=request.tag)
        return result

    async def aclose(self) -> None:
        closer = getattr(self.inner, "aclose", None)
        if closer is not None:
            await closer()

    def close(self) -> None:
        self.inner.close()
