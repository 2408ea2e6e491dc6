"""Text generators behind the annotation roles: request/result types, errors, and the registry.

A generator is anything with `async generate(GenRequest) -> GenResult`. Specs:

- `openai:http://HOST:PORT/v1#MODEL`             OpenAI-compatible chat endpoint (vLLM, SGLang,
                                                  llama.cpp server, Ollama, OpenAI); images inline
- `openai-completions:http://HOST:PORT/v1#MODEL` the plain `/completions` endpoint (text only; base models)
- `llamacpp:gemma3-270m` or `llamacpp:/path.gguf` starts a local llama.cpp server, then as above
- `hf-vlm:PATH_OR_NAME`                           local transformers image-text-to-text model
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from megapairs.errors import RESUME_HINT, RunFailure
from megapairs.registry import Registry


@dataclass(frozen=True)
class GenRequest:
    """One generation. `images` (PNG bytes) are shown before `prompt`, each after its label."""

    prompt: str
    images: tuple[bytes, ...] = ()
    image_labels: tuple[str, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    tag: str = ""  # prompt version and step, e.g. "v1/write"; part of the cache key

    def key_payload(self, model_id: str) -> dict[str, Any]:
        return {
            "model": model_id,
            "tag": self.tag,
            "prompt": self.prompt,
            "images": [hashlib.sha256(b).hexdigest() for b in self.images],
            "image_labels": list(self.image_labels),
            "sampling": {"max_tokens": self.max_tokens, "temperature": self.temperature,
                         "top_p": self.top_p, "seed": self.seed, "stop": list(self.stop)},
        }

    def cache_key(self, model_id: str) -> str:
        raw = json.dumps(self.key_payload(model_id), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class GenResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    finish_reason: str = ""


class BackendError(RunFailure, RuntimeError):
    """A request failed for good (after retries).

    `unavailable` means the server itself is down or refusing work (connection errors, 429, 502-504):
    the run stops, and a rerun resumes from the cache. Other failures (a 4xx for this request, a 500,
    a malformed body) concern one request; the annotator records them and falls back.
    """

    def __init__(self, message: str, *, unavailable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.unavailable = unavailable
        self.status = status
        if unavailable:
            self.hint = f"check that the server is up and accepts requests, then {RESUME_HINT}"


class BackendUnavailable(RunFailure, RuntimeError):
    """A backend cannot be built here (package missing, model file absent, server did not start)."""


class Generator(Protocol):
    spec: str
    model_id: str  # identifies the model in cache keys (not the URL it is served from)
    supports_images: bool

    async def generate(self, request: GenRequest) -> GenResult: ...

    def close(self) -> None: ...


@dataclass
class GenOptions:
    """Operational options every generator factory receives."""

    api_key: str = ""
    timeout_s: float = 120.0
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    concurrency: int = 8
    llamacpp_threads: int = 0
    llamacpp_parallel: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


GENERATORS: Registry[Generator] = Registry("generator")


def build_generator(spec: str, options: GenOptions | None = None) -> Generator:
    import megapairs.annotate.client  # noqa: F401  (registers openai, openai-completions)
    import megapairs.annotate.hf_vlm  # noqa: F401  (registers hf-vlm)
    import megapairs.annotate.llamacpp  # noqa: F401  (registers llamacpp)

    return GENERATORS.build(spec, options=options or GenOptions())
