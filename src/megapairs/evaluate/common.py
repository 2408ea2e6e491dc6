"""Shared pieces of the benchmark readers: what gets embedded, options, and file checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

from megapairs.configbase import ConfigBase, ConfigError
from megapairs.errors import UserError

# keep: the reference stays where it ranks; remove: deleted from the ranking (SEARLE); min: it stays
# with its score lowered to the row minimum (CIRPLANT, the CIRR authors' reference code)
REFERENCE_POLICIES = ("keep", "remove", "min")
QUERY_MODES = ("composed", "image", "text")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # --dtype -> torch dtype name


class DataError(UserError, FileNotFoundError):
    """A benchmark file is missing or malformed. The message names the exact path."""


@dataclass(frozen=True)
class Crop:
    """A VisualGenome box (x, y, w, h) in pixels, cut out as GeneCIS does (dilate, then pad to square)."""

    x: float
    y: float
    w: float
    h: float
    dilation: float = 0.7
    pad_square: bool = True


@dataclass(frozen=True)
class Item:
    """One thing to embed: an image, a text, or both (a composed query)."""

    key: str
    image: Path | None = None
    text: str | None = None
    crop: Crop | None = None
    # A task instruction (MMEB). Retrievers with an instruction slot (`encode(..., instruction=)`, the
    # MLLM) get it there and `text` as the query; the others get `full_text`.
    instruction: str | None = None

    @property
    def full_text(self) -> str | None:
        """None only when there is no text at all: an empty query text ("") is still a text, so an
        image + "" query is embedded as a composed query, as BGE-VL's eval (every CIR query `mm_it`)
        and its `encode(images=..., text="")` do."""
        if self.instruction is None and self.text is None:
            return None
        return " ".join(t for t in (self.instruction, self.text) if t)

    @property
    def modality(self) -> str:
        if self.image is not None and self.full_text is not None:
            return "composed"
        return "image" if self.image is not None else "text"

    def fingerprint(self) -> str:
        """Stable description used in gallery-cache keys."""
        crop = None if self.crop is None else [self.crop.x, self.crop.y, self.crop.w, self.crop.h,
                                               self.crop.dilation, self.crop.pad_square]
        fields = [self.key, None if self.image is None else str(self.image), self.text, crop]
        return json.dumps(fields if self.instruction is None else fields + [self.instruction])


@dataclass
class EvalOptions(ConfigBase):
    """Options for one `evaluate` call. `None` means "the benchmark's default" (see each module)."""

    split: str | None = None
    template: str | None = None  # a template name, or a literal format string containing "{"
    reference_policy: str | None = None  # keep | remove | min
    batch_size: int = 32
    topk: int = 50  # ranking depth kept per query (submissions need 50)
    cache_dir: str | None = None  # gallery-embedding cache; default ~/.cache/megapairs/evaluate
    out_dir: str | None = None  # where results (JSON, Markdown, submissions) go; None = not written
    progress: bool = True
    limit: int | None = None  # evaluate only the first N queries (smoke runs; marked partial)
    image_dir: str | None = None  # override where images are looked up
    paper_model: str | None = None  # key into paper_numbers; guessed from the spec when None
    categories: tuple[str, ...] = ("dress", "shirt", "toptee")  # FashionIQ
    tasks: tuple[str, ...] = ("focus_attribute", "change_attribute", "focus_object", "change_object")
    datasets: tuple[str, ...] = ()  # MMEB; empty = every dataset found under the data folder
    instructions: str = "first"  # triplets: first | all (each instruction its own query)
    query_modes: tuple[str, ...] = QUERY_MODES  # triplets
    instruction: str | None = None  # replaces the retriever's task instruction (MLLM); recorded in the result
    dtype: str | None = None  # weights dtype the retriever was loaded with (bf16 | fp16 | fp32); recorded
    bootstrap: int = 1000  # triplets: paired bootstrap resamples (0 = no interval)
    bootstrap_seed: int = 0

    NOT_HASHED: ClassVar[tuple[str, ...]] = ("batch_size", "cache_dir", "out_dir", "progress")

    def validate(self) -> None:
        where = getattr(self, "_where", type(self).__name__)
        if self.reference_policy not in (None, *REFERENCE_POLICIES):
            raise ConfigError(f"{where}.reference_policy: {self.reference_policy!r} is not keep, remove or min")
        if self.instructions not in ("first", "all"):
            raise ConfigError(f"{where}.instructions: {self.instructions!r} is not first or all")
        bad = [m for m in self.query_modes if m not in QUERY_MODES]
        if bad or not self.query_modes:
            raise ConfigError(f"{where}.query_modes: {list(self.query_modes)} must be a non-empty subset of "
                              f"{list(QUERY_MODES)}")
        for name in ("batch_size", "topk"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be at least 1")
        if self.dtype not in (None, *DTYPES):
            raise ConfigError(f"{where}.dtype: {self.dtype!r} is not one of {list(DTYPES)}")
        if self.bootstrap < 0:
            raise ConfigError(f"{where}.bootstrap: must be >= 0")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{where}.limit: must be at least 1")


def require(path: Path, what: str) -> Path:
    """Return `path` if it exists, else raise DataError naming it."""
    if not path.exists():
        raise DataError(f"missing {what}: {path}")
    return path


def first_existing(candidates: Sequence[Path], what: str) -> Path:
    """The first candidate that exists; the error lists every path tried."""
    for p in candidates:
        if p.exists():
            return p
    tried = "\n  ".join(str(p) for p in candidates)
    raise DataError(f"missing {what}; looked for:\n  {tried}")


def pick_root(roots: Sequence[Path], relative: Path | str, what: str) -> Path:
    """The first root under which `relative` exists (used to find where a benchmark keeps images)."""
    found = first_existing([r / relative for r in roots], what)
    return roots[[r / relative for r in roots].index(found)]


def read_json(path: Path, what: str) -> Any:
    require(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{what} is not valid JSON: {path} ({e})") from None


def check_keys(rows: Iterable[dict], keys: Sequence[str], path: Path) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise DataError(f"{path}: entry {i} lacks field(s) {missing}; is this the official file?")


def policy_or(default: str, options: EvalOptions) -> str:
    return options.reference_policy or default


def limited(rows: list, options: EvalOptions) -> list:
    return rows if options.limit is None else rows[: options.limit]


@dataclass
class BenchmarkOutput:
    """What a benchmark module hands back to the runner."""

    metrics: dict[str, float]  # headline numbers, percentages
    num_queries: int
    gallery_size: int | str
    details: dict[str, Any] = field(default_factory=dict)  # extra breakdowns (not in the table)
    files: dict[str, Any] = field(default_factory=dict)  # file name -> JSON object to write (submissions)
    template: dict[str, Any] = field(default_factory=dict)  # {"name": ..., "format": ...}
    reference_policy: str | None = None
    split: str | None = None
    instruction: str | None = None  # what the run used as the task instruction (None: none / per task)
