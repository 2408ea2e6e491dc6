"""Configuration of the mine stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from megapairs.configbase import ConfigBase, ConfigError

INDEX_KINDS = ("auto", "flat", "ivf", "ivf_flat", "ivf_sq8", "ivf_pq", "hnsw")  # ivf = ivf_flat
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(size: str | int) -> int:
    """`8GiB`, `500MB`, `1.5 GiB` or a plain number of bytes -> bytes."""
    text = str(size).strip().upper().replace(" ", "")
    num = text.rstrip("KMGTIB")
    unit = text[len(num):]
    if not num or unit not in _UNITS:
        raise ValueError(f"not a size: {size!r}")
    return int(float(num) * _UNITS[unit])


def _paper_bands() -> dict[str, list[float]]:
    return {"image": [0.8, 0.96], "visual": [0.8, 0.96], "caption": [0.8, 0.96]}


@dataclass
class MineConfig(ConfigBase):
    k: int = 20  # neighbours retrieved per view and query (the query itself excluded)
    # Per-view (low, high), exclusive. In `score` units these are cosine similarities (the paper:
    # (0.8, 0.96) for all views); in `quantile` units they are quantiles of that view's neighbour
    # scores over the corpus, resolved to scores at run time (each view has its own scale).
    bands: dict[str, list[float]] = field(default_factory=_paper_bands)
    band_units: str = "score"
    # A pair scoring at or above a view's threshold here is a near-duplicate, whichever view found it.
    near_duplicate: dict[str, float] = field(default_factory=lambda: {"image": 0.985, "visual": 0.985})
    max_targets_per_query: int = 5
    num_hard_negatives: int = 5  # including the query image itself, which is always hns[0]
    num_queries: int | None = None  # sample this many query images (seeded); None = every image
    # flat (exact, blockwise) | ivf_flat | ivf_sq8 | ivf_pq (+ exact re-ranking) | hnsw | auto:
    # flat below approx_threshold vectors, else the most accurate IVF kind whose index fits
    # memory_budget (all views together; the float16 vectors themselves are memory-mapped).
    index: str = "auto"
    memory_budget: str = "8GiB"
    approx_threshold: int = 1_000_000
    nlist: int | None = None  # IVF lists; default 4*sqrt(N) (sqrt(N) for ivf_pq)
    nprobe: int | None = None  # None: the smallest that reaches target_recall on a sample
    target_recall: float = 0.95  # recall@k against exact search, measured when the index is built
    recall_sample: int = 256  # queries for that measurement
    refine_factor: int = 4  # ivf_pq / ivf_sq8: re-rank refine_factor * k candidates exactly
    train_size: int = 100_000  # vectors sampled to train the index (once, in plan)
    hnsw_m: int = 32
    ef_search: int = 128
    device: str = "auto"  # exact search: cuda when present (torch, blockwise), else cpu (FAISS)
    query_shard_size: int = 50_000
    seed: int = 0
    # Keep only pairs whose change the `changes:` describer can state from the titles, file names and
    # pixels (mine/describable.py): each query keeps its best describable candidates.
    require_change: bool = False
    NOT_HASHED = ("query_shard_size", "device")

    def validate(self) -> None:
        w = self.where
        if self.k < 1:
            raise ConfigError(f"{w}.k must be >= 1")
        if self.band_units not in ("score", "quantile"):
            raise ConfigError(f"{w}.band_units must be score or quantile, got {self.band_units!r}")
        for view, band in self.bands.items():
            if len(band) != 2 or not band[0] < band[1]:
                raise ConfigError(f"{w}.bands.{view} must be [low, high] with low < high, got {band}")
            if self.band_units == "quantile" and not (0 <= band[0] and band[1] <= 1):
                raise ConfigError(f"{w}.bands.{view}: quantiles must lie in [0, 1], got {band}")
        if self.index not in INDEX_KINDS:
            raise ConfigError(f"{w}.index must be one of {', '.join(INDEX_KINDS)}, got {self.index!r}")
        try:
            parse_bytes(self.memory_budget)
        except ValueError:
            raise ConfigError(f"{w}.memory_budget must be a size like 8GiB or 500MB, got {self.memory_budget!r}") from None
        if not 0 < self.target_recall <= 1:
            raise ConfigError(f"{w}.target_recall must lie in (0, 1]")
        if self.refine_factor < 1 or self.recall_sample < 1 or self.train_size < 1:
            raise ConfigError(f"{w}.refine_factor, recall_sample and train_size must be >= 1")
        if self.max_targets_per_query < 1 or self.num_hard_negatives < 1:
            raise ConfigError(f"{w}.max_targets_per_query and num_hard_negatives must be >= 1")
        if self.num_queries is not None and self.num_queries < 1:
            raise ConfigError(f"{w}.num_queries must be >= 1 or null")
