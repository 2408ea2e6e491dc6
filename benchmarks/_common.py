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


def rss_anon_gib(pid: int | str = "self") -> float:
    """Anonymous resident memory (heap, not page cache or mapped files) of a process, GiB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


class AnonPeak:
    """Samples this process's RssAnon on a thread (the kernel keeps no peak of it)."""

    def __init__(self, every_s: float = 0.1) -> None:
        import threading

        self.peak, self.every_s, self._stop = rss_anon_gib(), every_s, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss_anon_gib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_anon_gib())


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


class Realistic:
    """Vectors that are not trivially clustered: `topics` broad topics, `per_topic` finer clusters
    in each, a shared low-rank continuous variation (decaying spectrum) and isotropic noise, so a
    point's nearest neighbours mix its fine cluster, its topic and the continuous directions.
    Drawn shard by shard (nothing held for the whole set); float16, L2-normalised."""

    def __init__(self, dim: int, seed: int, topics: int = 256, per_topic: int = 64, rank: int = 64,
                 fine: float = 0.8, low_rank: float = 0.6, noise: float = 0.6) -> None:
        rng = np.random.default_rng(seed)
        topic = rng.normal(size=(topics, dim)).astype(np.float32)
        self.centres = np.repeat(topic, per_topic, 0) + fine * rng.normal(size=(topics * per_topic, dim)).astype(np.float32)
        spectrum = 1.0 / np.sqrt(1 + np.arange(rank))
        basis = rng.normal(size=(rank, dim)).astype(np.float32) * (spectrum / np.linalg.norm(spectrum))[:, None]
        self.basis = basis * low_rank  # per coordinate: topic 1, fine cluster fine^2, low rank low_rank^2
        self.noise, self.seed, self.dim = noise, seed, dim

    def rows(self, start: int, m: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        x = self.centres[rng.integers(0, len(self.centres), m)]
        x += rng.normal(size=(m, len(self.basis))).astype(np.float32) @ self.basis
        x += self.noise * rng.normal(size=(m, self.dim)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def write_embeddings(root: Path, n: int, dims: dict[str, int], shard: int = 250_000, seed: int = 0,
                     clusters: int = 2000, noise: float = 0.35, realistic: bool = False) -> None:
    """A complete `embeddings` artifact with synthetic views, readable by the mine stage.
    `realistic`: `Realistic` vectors drawn per shard; else tight clusters (`clustered`)."""
    art = Artifact(root / "embeddings", config_hash=f"synthetic-{n}-{seed}-{realistic}")
    art.begin(overwrite=True)
    if realistic:
        gens = {v: Realistic(d, seed + j) for j, (v, d) in enumerate(dims.items())}
        draw = lambda v, i, m: gens[v].rows(i, m)  # noqa: E731
    else:
        mats = {v: clustered(n, d, clusters, noise, seed + j) for j, (v, d) in enumerate(dims.items())}
        draw = lambda v, i, m: mats[v][i : i + m]  # noqa: E731
    num = 0
    for s, i in enumerate(range(0, n, shard)):
        m = min(shard, n - i)
        write_table(art.shard_path(s), pa.table({"id": [f"{r:032x}" for r in range(i, i + m)]}))
        for v in dims:
            write_npy(art.path / vector_relpath(v, s), draw(v, i, m))
        art.mark_done(s, m, [])
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
