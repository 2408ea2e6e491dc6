"""Pair selection for one batch of queries, from each view's KNN results. Pure NumPy + Python.

Rules (the paper's, with the unknowns made explicit):
- a (query, target) pair is kept when at least one view retrieved the target among its top-k
  with a score strictly inside that view's band; `found_by` lists those views;
- the query itself and near-duplicates (a score at or above `near_duplicate[view]` in any listed
  view, whichever view found the pair) are dropped;
- targets are ordered by how many views found them, then their best rank in a finding view
  (ties: view order), and capped per query;
- hard negatives: the query image first, then other images retrieved for the same query
  (other kept targets first), in a seeded shuffle.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Stats:
    kept_by_view: dict[str, int] = field(default_factory=dict)  # pairs each view found
    dropped: dict[str, int] = field(default_factory=dict)
    hist_kept: dict[str, list[int]] = field(default_factory=dict)
    hist_all: dict[str, list[int]] = field(default_factory=dict)

    def add(self, d: dict[str, int], key: str, n: int = 1) -> None:
        d[key] = d.get(key, 0) + n


HIST_BINS = np.linspace(-1.0, 1.0, 41)  # 0.05-wide bins over cosine similarity


def _rng(seed: int, *keys: str) -> np.random.Generator:
    h = hashlib.sha256(("|".join([str(seed), *keys])).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def pair_scores(mats: dict[str, np.ndarray], q: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Cosine similarity of rows q[i], t[i] in every view: (P,) per view, computed in chunks."""
    out = {}
    for v, m in mats.items():
        s = np.empty(len(q), np.float32)
        for i in range(0, len(q), 65536):
            a, b = m[q[i : i + 65536]], m[t[i : i + 65536]]  # (P, D)
            s[i : i + 65536] = np.einsum("pd,pd->p", a, b)
        out[v] = s
    return out


def select_pairs(
    q_rows: np.ndarray,  # (Q,) row numbers of the queries
    knn: dict[str, tuple[np.ndarray, np.ndarray]],  # view -> (scores (Q,K), rows (Q,K))
    bands: dict[str, tuple[float, float]],
    mats: dict[str, np.ndarray],
    ids: list[str],
    *,
    near_duplicate: dict[str, float],
    max_targets: int,
    num_hard_negatives: int,
    seed: int,
) -> tuple[list[dict], Stats]:
    views = list(knn)
    stats = Stats(kept_by_view={v: 0 for v in views})
    for v in views:
        s, r = knn[v]
        valid = (r >= 0) & (r != q_rows[:, None])
        stats.hist_all[v] = np.histogram(s[valid], HIST_BINS)[0].tolist()
    per_query: list[tuple[int, dict[int, list], list[int]]] = []
    for qi, q in enumerate(q_rows):
        found: dict[int, list] = {}  # target row -> [best rank, [views]]
        pool: list[int] = []
        seen: set[int] = set()
        for v in views:
            s, r = knn[v][0][qi], knn[v][1][qi]
            lo, hi = bands[v]
            rank = 0
            for score, t in zip(s.tolist(), r.tolist()):
                if t < 0 or t == q:
                    continue
                if t not in seen:
                    seen.add(t)
                    pool.append(t)
                if lo < score < hi:
                    entry = found.setdefault(t, [rank, []])
                    entry[0] = min(entry[0], rank)
                    entry[1].append(v)
                elif score >= hi:
                    stats.add(stats.dropped, f"above_band:{v}")
                else:
                    stats.add(stats.dropped, f"below_band:{v}")
                rank += 1
        per_query.append((int(q), found, pool))

    # Near-duplicate check on every candidate pair, in every view at once.
    cand_q = np.array([q for q, found, _ in per_query for _ in found], dtype=np.int64)
    cand_t = np.array([t for _, found, _ in per_query for t in found], dtype=np.int64)
    scores = pair_scores(mats, cand_q, cand_t)
    score_of = {}
    for j, (q, t) in enumerate(zip(cand_q.tolist(), cand_t.tolist())):
        score_of[(q, t)] = {v: float(scores[v][j]) for v in scores}

    rows: list[dict] = []
    for q, found, pool in per_query:
        kept = []
        for t, (rank, fviews) in found.items():
            sc = score_of[(q, t)]
            if any(sc[v] >= thr for v, thr in near_duplicate.items() if v in sc):
                stats.add(stats.dropped, "near_duplicate")
                continue
            kept.append((-len(fviews), rank, views.index(fviews[0]), t, fviews, sc))
        kept.sort(key=lambda x: x[:4])
        if len(kept) > max_targets:
            stats.add(stats.dropped, "over_cap", len(kept) - max_targets)
            kept = kept[:max_targets]
        kept_rows = [k[3] for k in kept]
        for pair_rank, (_, _, _, t, fviews, sc) in enumerate(kept):
            others_kept = [x for x in kept_rows if x != t]
            others = [x for x in pool if x != t and x not in kept_rows]
            rng = _rng(seed, ids[q], ids[t])
            rng.shuffle(others_kept)
            rng.shuffle(others)
            negs = [q] + (others_kept + others)[: num_hard_negatives - 1]
            best_view = max(fviews, key=lambda v: sc[v] - bands[v][0])
            for v in fviews:
                stats.kept_by_view[v] += 1
            rows.append({
                "query_id": ids[q], "target_id": ids[t], "found_by": fviews,
                "best_view": best_view, "best_score": sc[best_view],
                **{f"score_{v}": sc.get(v) for v in mats},
                "hard_negatives": [ids[x] for x in negs], "pair_rank": pair_rank,
            })
    for v in views:
        vals = [r[f"score_{v}"] for r in rows if v in r["found_by"]]
        stats.hist_kept[v] = np.histogram(vals, HIST_BINS)[0].tolist()
    return rows, stats
