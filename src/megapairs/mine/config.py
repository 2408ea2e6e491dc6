"""Configuration of the mine stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from megapairs.configbase import ConfigBase, ConfigError


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
    index: str = "auto"  # flat | ivf | hnsw | auto (flat below approx_threshold vectors)
    approx_threshold: int = 1_000_000
    nlist: int | None = None  # IVF lists; default 4*sqrt(N)
    nprobe: int = 64
    hnsw_m: int = 32
    ef_search: int = 128
    query_shard_size: int = 50_000
    seed: int = 0
    # Keep only pairs whose change the `changes:` describer can state from the titles, file names and
    # pixels (mine/describable.py): each query keeps its best describable candidates.
    require_change: bool = False
    NOT_HASHED = ("query_shard_size",)

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
        if self.index not in ("auto", "flat", "ivf", "hnsw"):
            raise ConfigError(f"{w}.index must be auto, flat, ivf or hnsw, got {self.index!r}")
        if self.max_targets_per_query < 1 or self.num_hard_negatives < 1:
            raise ConfigError(f"{w}.max_targets_per_query and num_hard_negatives must be >= 1")
        if self.num_queries is not None and self.num_queries < 1:
            raise ConfigError(f"{w}.num_queries must be >= 1 or null")
