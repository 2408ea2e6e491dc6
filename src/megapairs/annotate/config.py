"""Configuration of the annotation stage (relation description, then instruction writing)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

from megapairs.configbase import ConfigBase, ConfigError

_URL_IN_SPEC = re.compile(r"^(openai(?:-completions)?:)[^#]*(#.*)?$")


def spec_identity(spec: str) -> str:
    """The part of a backend spec that decides the output. The endpoint URL of an OpenAI-compatible
    server is left out, so the same model behind another host or port resumes the same run."""
    s = spec.strip()
    prefix = "captions:" if s.startswith("captions:") else ""
    s = s[len(prefix):]
    m = _URL_IN_SPEC.match(s)
    return prefix + (f"{m.group(1)}{m.group(2) or ''}" if m else s)


@dataclasses.dataclass
class AnnotateConfig(ConfigBase):
    """Two-step annotation of mined pairs.

    `describer` writes a relation note for (source, target); `writer` turns the note into at least
    `min_instructions` retrieval instructions; `fallbacks` are tried in order when a writer is
    unavailable or its output fails validation (the last resort is `template:`).
    """

    describer: str = "captions:llamacpp:gemma3-270m"
    writer: str = "llamacpp:gemma3-270m"
    describer_fallbacks: list[str] = dataclasses.field(default_factory=lambda: ["template:"])
    writer_fallbacks: list[str] = dataclasses.field(default_factory=lambda: ["template:"])
    word_range: tuple[int, int] = (60, 100)
    min_instructions: int = 3
    max_instructions: int = 6
    max_chars: int = 300  # per instruction; CLIP-style retrievers keep only ~77 tokens anyway
    min_words: int = 2
    few_shot_k: int = 5
    demo_pool: str = ""  # a JSONL path; empty: the packaged pool of this prompt version
    prompt_version: str = "v1"
    temperature: float = 0.3
    top_p: float = 0.9
    describe_max_tokens: int = 220
    write_max_tokens: int = 160
    writer_attempts: int = 2  # per writer, each with a fresh demo sample, before falling back
    # How a model writer is asked. "list": one request per pair returns a JSON list (instruct/chat
    # models). "line": one instruction per request, several requests per pair (small base models).
    # "auto": line for completion endpoints (`llamacpp:`, `openai-completions:`), list for chat.
    writer_mode: str = "auto"
    line_spare: int = 2  # line mode sends min_instructions + line_spare requests per pair
    line_few_shot_k: int = 8  # shots per line prompt (shared by all requests, so cached: cheap)
    line_demo_sets: int = 1  # distinct shot sets per run (1: one shared prefix, best for prefix caching)
    line_temperature: float = 0.7
    line_max_tokens: int = 32
    max_words: int = 16  # line mode: longer instructions are rejected (CLIP keeps ~77 tokens)
    # line mode: instructions per pair that may leave out everything only the target has ("The same
    # kind of flag." when the target is Zambia's flag); the others must name some of it. -1: no limit.
    max_vague: int = 1
    line_demo_pool: str = ""  # a JSONL path; empty: the packaged line pool of this prompt version
    seed: int = 0
    shard_size: int = 256  # pairs per shard of the output artifact
    image_max_side: int = 768  # images sent to a pixel describer are shrunk to fit (PNG)
    # Operational knobs (not hashed: changing them never changes a finished row).
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    api_key: str = ""  # else the OPENAI_API_KEY environment variable; blanked in to_dict (never saved)
    cache_path: str = ""  # empty: <run root>/_cache/annotate.sqlite
    strict_backends: bool = False  # raise instead of falling back when a backend cannot start
    probe_servers: bool = True  # at run start, GET /v1/models of each openai: server (up? serves the model?)
    progress: bool = True
    llamacpp_threads: int = 0  # 0: all cores but one (at most 8)
    llamacpp_parallel: int = 2  # llama.cpp server slots (few slots keep the cached prompt prefixes warm)
    # Stop the run (after saving the current shard) when more rows than this share were written by a
    # fallback backend, or failed; 1.0 turns a check off. See annotate/quality.py.
    max_fallback_share: float = 0.5
    max_failure_share: float = 0.5

    NOT_HASHED: ClassVar[tuple[str, ...]] = (
        "concurrency", "timeout_s", "retries", "backoff_s", "backoff_max_s", "api_key", "cache_path",
        "strict_backends", "probe_servers", "progress", "llamacpp_threads", "llamacpp_parallel",
        "max_fallback_share", "max_failure_share",
    )

    def validate(self) -> None:
        lo, hi = self.word_range
        if not 5 <= lo <= hi:
            raise ConfigError(f"{self.where_name()}.word_range: need 5 <= low <= high, got {self.word_range}")
        checks = {
            "min_instructions": self.min_instructions >= 1,
            "max_instructions": self.max_instructions >= self.min_instructions,
            "max_chars": self.max_chars >= 20,
            "min_words": self.min_words >= 1,
            "few_shot_k": self.few_shot_k >= 0,
            "writer_attempts": self.writer_attempts >= 1,
            "line_spare": self.line_spare >= 0,
            "line_few_shot_k": self.line_few_shot_k >= 0,
            "line_demo_sets": self.line_demo_sets >= 1,
            "line_temperature": self.line_temperature >= 0,
            "line_max_tokens": self.line_max_tokens >= 4,
            "max_words": self.max_words >= self.min_words,
            "max_vague": self.max_vague >= -1,
            "shard_size": self.shard_size >= 1,
            "image_max_side": self.image_max_side >= 32,
            "concurrency": self.concurrency >= 1,
            "timeout_s": self.timeout_s > 0,
            "retries": self.retries >= 0,
            "temperature": self.temperature >= 0,
            "top_p": 0 < self.top_p <= 1,
            "max_fallback_share": 0 <= self.max_fallback_share <= 1,
            "max_failure_share": 0 <= self.max_failure_share <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{self.where_name()}.{name}: value {getattr(self, name)!r} is out of range")
        if self.writer_mode not in ("auto", "list", "line"):
            raise ConfigError(f"{self.where_name()}.writer_mode: expected auto, list or line, got {self.writer_mode!r}")
        for name in ("describer", "writer"):
            if ":" not in getattr(self, name):
                raise ConfigError(f"{self.where_name()}.{name}: spec must look like prefix:argument")

    def backend_specs(self, where: str) -> list[tuple[str, str, str]]:
        """(role, config field, spec): the describer, the writer, then their fallbacks."""
        roles = ("describer", "writer")
        return [(r, f"{where}.{r}", getattr(self, r)) for r in roles] + [
            (r, f"{where}.{r}_fallbacks[{i}]", spec) for r in roles for i, spec in enumerate(getattr(self, f"{r}_fallbacks"))]

    def check_specs(self, where: str) -> None:
        from megapairs.annotate.roles import DESCRIBERS, WRITERS

        for role, field, spec in self.backend_specs(where):
            (DESCRIBERS if role == "describer" else WRITERS).check(spec, field)

    def where_name(self) -> str:
        return getattr(self, "_where", type(self).__name__)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["api_key"] = ""  # a saved config never holds the secret; use OPENAI_API_KEY to resume
        return d

    def hashed_dict(self) -> dict[str, Any]:
        d = super().hashed_dict()
        d["describer"] = spec_identity(self.describer)
        d["writer"] = spec_identity(self.writer)
        d["describer_fallbacks"] = [spec_identity(s) for s in self.describer_fallbacks]
        d["writer_fallbacks"] = [spec_identity(s) for s in self.writer_fallbacks]
        return d
