"""Exact top-k inner-product search over memory-mapped float16 vectors, in bounded memory.

Two interchangeable paths with the same output (up to float rounding and the order of exact ties):
- `faiss_knn`: CPU, FAISS brute force per database block, results merged in a heap;
- `torch_knn`: blockwise matmul + top-k with torch, on CUDA when present (tested on CPU with the
  same code). GPU memory is bounded by the block sizes, not by the database size.
"""

from __future__ import annotations

import faiss
import numpy as np

from megapairs.embed.store import Vectors

DB_BLOCK = 65_536  # database rows per block: (65536, 1024) float32 is 256 MiB


def faiss_knn(q: np.ndarray, db: Vectors, k: int, db_block: int = DB_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """q: (Q, D) float32 -> scores (Q, k) float32 descending, rows (Q, k) int64 (-1 padding)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    heap = faiss.ResultHeap(len(q), k, keep_max=True)
    for start, xb in db.blocks(db_block):
        s, r = faiss.knn(q, xb, min(k, len(xb)), metric=faiss.METRIC_INNER_PRODUCT)  # (Q, k') each
        if s.shape[1] < k:  # a short last block: pad so the heap sees (Q, k)
            pad = k - s.shape[1]
            s = np.pad(s, ((0, 0), (0, pad)), constant_values=-np.inf)
            r = np.pad(r, ((0, 0), (0, pad)), constant_values=-1 - start)
        heap.add_result(s, r + start)
    heap.finalize()
    rows = heap.I.copy()
    rows[~np.isfinite(heap.D)] = -1
    return heap.D.astype(np.float32), rows


def torch_knn(q: np.ndarray, db: Vectors, k: int, device: str = "cpu", db_block: int = DB_BLOCK,
              q_block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as `faiss_knn`. Memory on `device`: all queries + their running top-k, one
    database block, and one (q_block, db_block) score tile."""
    import torch

    k_eff = min(k, len(db))
    qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32)).to(device)  # (Q, D)
    best_s = torch.full((len(q), k_eff), -float("inf"), device=device)  # (Q, k)
    best_i = torch.full((len(q), k_eff), -1, dtype=torch.int64, device=device)
    for start, xb in db.blocks(db_block):
        xt = torch.from_numpy(xb).to(device)  # (B, D) float32
        for i in range(0, len(q), q_block):
            tile = qt[i : i + q_block] @ xt.T  # (b, B); full float32, no TF32
            s, j = tile.topk(min(k_eff, tile.shape[1]), dim=1)
            cat_s = torch.cat([best_s[i : i + q_block], s], 1)
            cat_i = torch.cat([best_i[i : i + q_block], j + start], 1)
            top_s, pos = cat_s.topk(k_eff, dim=1)
            best_s[i : i + q_block], best_i[i : i + q_block] = top_s, cat_i.gather(1, pos)
    s, r = best_s.cpu().numpy(), best_i.cpu().numpy()
    if k_eff < k:
        s = np.pad(s, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
        r = np.pad(r, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return s.astype(np.float32), r


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False


def exact_knn(q: np.ndarray, db: Vectors, k: int, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Exact search on the GPU when `device` is cuda (or auto with CUDA present), else FAISS on CPU."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "faiss" or device == "cpu":
        return faiss_knn(q, db, k)
    return torch_knn(q, db, k, device=device)

