"""Exact top-k search over L2-normalised embeddings (FAISS IndexFlatIP), with deterministic ties.

FAISS does not promise an order among equal scores, so each row is re-sorted stably by
(score desc, gallery index asc). If the last fetched score still equals the k-th score, a tie may
continue past what FAISS returned; that row is then ranked exactly over the whole gallery in numpy.

`demote[q]` (CIRPLANT's reference handling, `eval_test_prepare_step_CIRR`): row q is ranked in numpy
over the whole gallery with that item's score replaced by the row's minimum, so the item stays in
the ranking, among the lowest-scoring items (ties by gallery order).
"""

from __future__ import annotations

from typing import Sequence

import faiss
import numpy as np

from megapairs.evaluate.metrics import stable_rank

TIE_MARGIN = 8  # extra neighbours fetched so boundary ties rarely need the exact fallback


def build_index(gallery: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))  # (N, D)
    return index


def search(queries: np.ndarray, gallery: np.ndarray, k: int,
           exclude: Sequence[int | None] | None = None, index: faiss.Index | None = None,
           demote: Sequence[int | None] | None = None) -> list[np.ndarray]:
    """Top-k gallery indices per query, best first. `exclude[q]` (a gallery index) is left out of row q;
    `demote[q]` stays in row q with the row's minimum score (see the module doc).

    queries (Q, D), gallery (N, D) -> Q arrays of length min(k, N - excluded).
    """
    n = gallery.shape[0]
    if n == 0:
        raise ValueError("the gallery is empty")
    if demote is not None:
        if exclude is not None:
            raise ValueError("search takes exclude or demote, not both")
        return [demoted_row(queries[q], gallery, d)[:k] for q, d in enumerate(demote)]
    index = index if index is not None else build_index(gallery)
    fetch = min(n, k + 1 + TIE_MARGIN)
    scores, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)  # (Q, fetch) each
    out: list[np.ndarray] = []
    for q in range(queries.shape[0]):
        skip = exclude[q] if exclude is not None else None
        s, ix = scores[q], idx[q]
        order = np.lexsort((ix, -s.astype(np.float64)))  # score desc, then gallery index asc
        s, ix = s[order], ix[order]
        keep = ix != skip if skip is not None else np.ones(len(ix), dtype=bool)
        s_kept, ix_kept = s[keep], ix[keep]
        want = min(k, n - (0 if skip is None or skip < 0 else 1))
        if fetch < n and (len(s_kept) < want or s_kept[-1] >= s_kept[want - 1]):
            ix_kept = _exact_row(queries[q], gallery, skip)  # a tie may run past the fetched rows
        out.append(ix_kept[:want].astype(np.int64))
    return out


def _exact_row(query: np.ndarray, gallery: np.ndarray, skip: int | None) -> np.ndarray:
    ranked = stable_rank(gallery @ query)  # (N,)
    return ranked[ranked != skip] if skip is not None else ranked


def demoted_row(query: np.ndarray, gallery: np.ndarray, item: int | None) -> np.ndarray:
    """The whole gallery ranked for one query, `item`'s score first lowered to the row minimum (the
    minimum over every score, its own included), as CIRPLANT does before its `np.argsort`."""
    scores = np.asarray(gallery, dtype=np.float32) @ np.asarray(query, dtype=np.float32)  # (N,)
    if item is not None and item >= 0:
        scores[item] = scores.min()
    return stable_rank(scores).astype(np.int64)
