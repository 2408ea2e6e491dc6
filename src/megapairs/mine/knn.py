"""FAISS indexes over L2-normalised vectors (inner product = cosine)."""

from __future__ import annotations

import math

import faiss
import numpy as np


def choose_index(n: int, kind: str, approx_threshold: int) -> str:
    if kind != "auto":
        return kind
    return "flat" if n < approx_threshold else "ivf"


def build_index(x: np.ndarray, kind: str = "flat", nlist: int | None = None, nprobe: int = 64,
                hnsw_m: int = 32, ef_search: int = 128, seed: int = 0) -> faiss.Index:
    """x: (N, D) float32, L2-normalised."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)] if n > 64 * nlist else x
        index.cp.seed = seed
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    index.add(x)
    return index


def search(index: faiss.Index, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, D) -> scores (Q, k) float32, ids (Q, k) int64 (-1 where fewer than k exist)."""
    return index.search(np.ascontiguousarray(q, dtype=np.float32), min(k, index.ntotal))


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found by the approximate search."""
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) / max(1, (e >= 0).sum()) for a, e in zip(approx_ids, exact_ids)]
    return float(np.mean(hits)) if hits else 1.0
