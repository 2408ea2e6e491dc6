"""Shared helpers for the benchmark scripts: synthetic clustered embeddings as an artifact."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pyarrow as pa

from megapairs.artifacts import Artifact, write_npy, write_table
from megapairs.embed.store import vector_relpath


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def clustered(n: int, dim: int, clusters: int, noise: float, seed: int) -> np.ndarray:
    """L2-normalised float16 vectors around `clusters` random centres (real embeddings cluster)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float16)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        x = centres[rng.integers(0, clusters, m)] + noise * rng.normal(size=(m, dim)).astype(np.float32)
        out[i : i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_embeddings(root: Path, n: int, dims: dict[str, int], shard: int = 250_000, seed: int = 0,
                     clusters: int = 2000, noise: float = 0.35) -> None:
    """A complete `embeddings` artifact with synthetic views, readable by the mine stage."""
    art = Artifact(root / "embeddings", config_hash=f"synthetic-{n}-{seed}")
    art.begin(overwrite=True)
    mats = {v: clustered(n, d, clusters, noise, seed + j) for j, (v, d) in enumerate(dims.items())}
    ids = [f"{i:032x}" for i in range(n)]
    num = 0
    for s, i in enumerate(range(0, n, shard)):
        write_table(art.shard_path(s), pa.table({"id": ids[i : i + shard]}))
        for v in dims:
            write_npy(art.path / vector_relpath(v, s), mats[v][i : i + shard])
        art.mark_done(s, len(ids[i : i + shard]), [])
        num += 1
    modality = {"image": "image", "visual": "image", "caption": "text"}
    art.write_manifest(kind="embeddings", num_shards=num, extra={
        "views": {v: {"spec": f"synthetic:{d}", "dim": d, "modality": modality.get(v, "image")} for v, d in dims.items()},
        "dtype": "float16", "normalized": True})


def time_stage_worker(stage) -> float:
    """Seconds for a stage's worker to process every shard, models already loaded: the steady-state
    pipeline (read, decode, preprocess, encode, write), without the one-off model load."""
    import time

    art = stage.output()
    art.begin(overwrite=True)
    tasks = stage.plan()
    worker = stage.make_worker()
    t0 = time.perf_counter()
    for task in tasks:
        worker(task)
    return time.perf_counter() - t0
