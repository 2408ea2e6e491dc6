"""Pair selection for one batch of queries, from each view's KNN results. Vectorised NumPy.

Rules (the paper's, with the unknowns made explicit):
- a (query, target) pair is kept when at least one view retrieved the target among its top-k
  with a score strictly inside that view's band; `found_by` lists those views;
- the query itself and near-duplicates (a score at or above `near_duplicate[view]` in any listed
  view, whichever view found the pair) are dropped;
- targets are ordered by how many views found them, then their best rank in a finding view
  (ties: view order, then row), and capped per query;
- a target that is a near-duplicate of a better target of the same query is dropped (one copy of
  a picture per query);
- hard negatives: the query image first, then other images retrieved for the same query (other
  kept targets first), ordered by a hash of (seed, query, target, candidate): a seeded shuffle;
  near-duplicates of the pair's target are no negatives and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HIST_BINS = np.linspace(-1.0, 1.0, 41)  # 0.05-wide bins over cosine similarity
_M = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class Stats:
    kept_by_view: dict[str, int] = field(default_factory=dict)  # pairs each view found
    dropped: dict[str, int] = field(default_factory=dict)
    hist_kept: dict[str, list[int]] = field(default_factory=dict)
    hist_all: dict[str, list[int]] = field(default_factory=dict)

    def add(self, key: str, n: int) -> None:
        if n:
            self.dropped[key] = self.dropped.get(key, 0) + int(n)


def mix64(*parts: np.ndarray | int) -> np.ndarray:
    """A splitmix64-style hash of int64 arrays (broadcast): deterministic pseudo-random keys."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x9E3779B97F4A7C15)
        for p in parts:
            h = (h ^ np.asarray(p).astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h = h ^ (h >> np.uint64(31))
            h = h * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(29))
    return h


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


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


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
) -> tuple[dict[str, list | np.ndarray], Stats]:
    """Returns the pairs as columns (see `mine.stage.pairs_schema`) and statistics."""
    views = list(knn)
    stats = Stats(kept_by_view={v: 0 for v in views})
    q_rows = np.asarray(q_rows, dtype=np.int64)
    Q = len(q_rows)
    cand_q, cand_t, cand_rank, cand_view, cand_in = [], [], [], [], []
    for vi, v in enumerate(views):
        s, r = knn[v]
        valid = (r >= 0) & (r != q_rows[:, None])  # (Q, K)
        rank = np.cumsum(valid, axis=1) - 1  # rank among valid neighbours
        lo, hi = bands[v]
        inband = valid & (s > lo) & (s < hi)
        stats.hist_all[v] = np.histogram(s[valid], HIST_BINS)[0].tolist()
        stats.add(f"above_band:{v}", int((valid & (s >= hi)).sum()))
        stats.add(f"below_band:{v}", int((valid & (s <= lo)).sum()))
        qi, ki = np.nonzero(valid)
        cand_q.append(qi)
        cand_t.append(r[qi, ki])
        cand_rank.append(rank[qi, ki])
        cand_view.append(np.full(len(qi), vi))
        cand_in.append(inband[qi, ki])
    cq, ct = np.concatenate(cand_q), np.concatenate(cand_t).astype(np.int64)
    crank, cview, cin = np.concatenate(cand_rank), np.concatenate(cand_view), np.concatenate(cand_in)
    n_all = max(len(ids), 1)

    # Found pairs: in-band (query, target), merged over views.
    fkey = cq[cin] * n_all + ct[cin]
    order = np.lexsort((cview[cin], crank[cin], fkey))
    fkey, frank, fview = fkey[order], crank[cin][order], cview[cin][order]
    starts = _group_starts(fkey) if len(fkey) else np.zeros(0, np.int64)
    pk = fkey[starts]
    p_q, p_t = pk // n_all, pk % n_all  # query position in batch, target row
    p_rank = frank[starts]  # best rank (sorted by rank within the pair)
    p_mask = np.bitwise_or.reduceat(1 << fview, starts) if len(fkey) else np.zeros(0, np.int64)
    p_first = np.minimum.reduceat(fview, starts) if len(fkey) else np.zeros(0, np.int64)
    p_nviews = np.array([bin(m).count("1") for m in p_mask.tolist()], dtype=np.int64)

    scores = pair_scores(mats, q_rows[p_q], p_t)
    near = np.zeros(len(pk), bool)
    for v, thr in near_duplicate.items():
        if v in scores:
            near |= scores[v] >= thr
    stats.add("near_duplicate", int(near.sum()))
    keep = ~near
    p_q, p_t, p_rank, p_mask, p_first, p_nviews = (a[keep] for a in (p_q, p_t, p_rank, p_mask, p_first, p_nviews))
    scores = {v: s[keep] for v, s in scores.items()}

    # Order within each query, drop targets that copy an earlier target of the same query, and cap.
    order = np.lexsort((p_t, p_first, p_rank, -p_nviews, p_q))
    p_q, p_t, p_rank, p_mask = p_q[order], p_t[order], p_rank[order], p_mask[order]
    scores = {v: s[order] for v, s in scores.items()}
    twin = _twin_targets(p_q, p_t, mats, near_duplicate, window=3 * max_targets)
    stats.add("near_duplicate_target", int(twin.sum()))
    p_q, p_t, p_rank, p_mask = p_q[~twin], p_t[~twin], p_rank[~twin], p_mask[~twin]
    scores = {v: s[~twin] for v, s in scores.items()}
    qs = _group_starts(p_q) if len(p_q) else np.zeros(0, np.int64)
    pos = np.arange(len(p_q)) - np.repeat(qs, np.diff(np.r_[qs, len(p_q)]))  # rank within query
    capped = pos < max_targets
    stats.add("over_cap", int((~capped).sum()))
    p_q, p_t, p_mask, pos = p_q[capped], p_t[capped], p_mask[capped], pos[capped]
    scores = {v: s[capped] for v, s in scores.items()}

    # one spare candidate per slot, so that dropping near-copies of the target still fills the list
    negs = _hard_negatives(q_rows, cq, ct, p_q, p_t, Q, n_all, 2 * num_hard_negatives - 1, seed)
    negs, n_twin = _drop_target_copies(negs, p_t, mats, near_duplicate, num_hard_negatives - 1)
    stats.add("near_duplicate_negative", n_twin)

    # Columns, built without a Python loop over pairs.
    id_arr = np.asarray(ids, dtype=object)
    q_abs = q_rows[p_q]
    mask_bits = np.stack([(p_mask >> vi & 1).astype(bool) for vi in range(len(views))], 1)  # (P, V)
    margin = np.stack([scores[v] - bands[v][0] for v in views], 1)  # (P, V): how far inside the band
    best = np.where(mask_bits, margin, -np.inf).argmax(1)
    best_view = np.asarray(views, dtype=object)[best]
    best_score = np.stack([scores[v] for v in views], 1)[np.arange(len(p_q)), best]
    names = np.asarray(views, dtype=object)
    found_by = [names[m].tolist() for m in mask_bits]
    hns = np.concatenate([q_abs[:, None], negs], 1)  # (P, n): hns[0] is the query
    hn_lists = [id_arr[row[row >= 0]].tolist() for row in hns]
    for vi, v in enumerate(views):
        stats.kept_by_view[v] = int(mask_bits[:, vi].sum())
        stats.hist_kept[v] = np.histogram(scores[v][mask_bits[:, vi]], HIST_BINS)[0].tolist()
    columns = {
        "query_id": id_arr[q_abs].tolist(), "target_id": id_arr[p_t].tolist(), "found_by": found_by,
        "best_view": best_view.tolist(), "best_score": best_score.astype(np.float32),
        **{f"score_{v}": scores[v].astype(np.float32) for v in mats},
        "hard_negatives": hn_lists, "pair_rank": pos.astype(np.int32),
    }
    return columns, stats


def _near(mats: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray, near_duplicate: dict[str, float]) -> np.ndarray:
    """(P,) True where rows a[i], b[i] (>= 0) score at or above a view's near-duplicate threshold."""
    out = np.zeros(len(a), bool)
    ok = (a >= 0) & (b >= 0)
    if not ok.any():
        return out
    scores = pair_scores({v: m for v, m in mats.items() if v in near_duplicate}, a[ok], b[ok])
    hit = np.zeros(int(ok.sum()), bool)
    for v, s in scores.items():
        hit |= s >= near_duplicate[v]
    out[ok] = hit
    return out


def _twin_targets(p_q: np.ndarray, p_t: np.ndarray, mats: dict[str, np.ndarray], near_duplicate: dict[str, float],
                  window: int) -> np.ndarray:
    """(P,) True for a target that is a near-duplicate of an earlier target of the same query (pairs
    sorted by query, best first; only the first `window` targets of a query are compared)."""
    twin = np.zeros(len(p_q), bool)
    if len(p_q) < 2 or not near_duplicate:
        return twin
    for lag in range(1, max(window, 1)):
        i = np.arange(lag, len(p_q))
        same = p_q[i] == p_q[i - lag]
        i = i[same]
        if not len(i):
            break
        twin[i] |= _near(mats, p_t[i], p_t[i - lag], near_duplicate)
    return twin


def _drop_target_copies(negs: np.ndarray, p_t: np.ndarray, mats: dict[str, np.ndarray],
                        near_duplicate: dict[str, float], keep: int) -> tuple[np.ndarray, int]:
    """Hard negatives (P, m) without near-duplicates of the pair's target (a copy of the positive is
    no negative), compacted to the first `keep` per row (-1 padded), and how many were dropped."""
    P, m = negs.shape
    if not P or not m:
        return negs[:, :keep], 0
    flat_t = np.repeat(p_t, m)
    near = _near(mats, negs.reshape(-1), flat_t, near_duplicate).reshape(P, m)
    kept = np.where(near, -1, negs)
    order = np.argsort(kept < 0, axis=1, kind="stable")  # valid candidates first, in their order
    kept = np.take_along_axis(kept, order, axis=1)[:, :keep]
    return kept, int(near.sum())


def _hard_negatives(q_rows, cq, ct, p_q, p_t, Q, n_all, n_neg, seed) -> np.ndarray:
    """For each kept pair: up to n_neg - 1 other images retrieved for its query, as rows (P, n-1)
    padded with -1 (the caller prepends the query image). Other kept targets come first, then a
    seeded order."""
    if n_neg <= 1 or len(p_q) == 0:
        return np.full((len(p_q), max(n_neg - 1, 0)), -1, dtype=np.int64)
    # Unique candidates per query (any view).
    ukey = np.unique(cq * n_all + ct)
    u_q, u_t = ukey // n_all, ukey % n_all
    u_start = np.searchsorted(u_q, np.arange(Q + 1))
    counts = u_start[1:] - u_start[:-1]  # (Q,)
    # Expand: every kept pair x every candidate of its query.
    reps = counts[p_q]
    pair_idx = np.repeat(np.arange(len(p_q)), reps)
    offs = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    cand = u_t[u_start[p_q][pair_idx] + offs]
    ok = cand != p_t[pair_idx]
    pair_idx, cand = pair_idx[ok], cand[ok]
    kept_keys = np.sort(p_q * n_all + p_t)
    ck = p_q[pair_idx] * n_all + cand
    pos = np.searchsorted(kept_keys, ck)
    is_target = (pos < len(kept_keys)) & (kept_keys[np.minimum(pos, len(kept_keys) - 1)] == ck)
    h = mix64(seed, q_rows[p_q[pair_idx]], p_t[pair_idx], cand)
    order = np.lexsort((h, ~is_target, pair_idx))
    pair_idx, cand = pair_idx[order], cand[order]
    starts = np.searchsorted(pair_idx, np.arange(len(p_q) + 1))
    within = np.arange(len(pair_idx)) - starts[pair_idx]
    take = within < n_neg - 1
    out = np.full((len(p_q), n_neg - 1), -1, dtype=np.int64)
    out[pair_idx[take], within[take]] = cand[take]
    return out
