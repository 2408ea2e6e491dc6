"""Pair selection for one batch of queries, from each view's KNN results. Vectorised NumPy over
blocks of SELECT_BLOCK queries (no loop over queries or pairs).

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

Cost: a query's found targets are examined best first, only until its cap is filled (a window of
cap targets, doubled for the few queries whose window held near-duplicates), so the float16
rows read per query are about cap x views, not every candidate x every check. One gather per
window, then batched matrix products give the query-target and target-target scores. The dropped
counts follow this: `near_duplicate`, `near_duplicate_target` and `near_duplicate_negative` count
what was examined, `over_cap` the found pairs left after the cap (examined or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

HIST_BINS = np.linspace(-1.0, 1.0, 41)  # 0.05-wide bins over cosine similarity
SELECT_BLOCK = 2048  # queries per block: bounds the (block, window, D) float32 gathers
# windows per gather while examining: the chunk's float32 rows (128 x 5 x 1024 x 4 B = 2.6 MB) are
# converted and multiplied while still in the CPU cache (one whole-block gather: ~25 % slower)
EXAMINE_CHUNK = 128
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


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _hist(x: np.ndarray) -> np.ndarray:
    return np.histogram(x, HIST_BINS)[0]


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
    q_vecs: dict[str, np.ndarray] | None = None,  # view -> (Q, D) float32 query vectors, if at hand
) -> tuple[dict[str, list | np.ndarray], Stats]:
    """Returns the pairs as columns (see `mine.stage.pairs_schema`) and statistics."""
    selector = PairSelector(list(knn), bands, mats, ids, near_duplicate=near_duplicate, max_targets=max_targets,
                            num_hard_negatives=num_hard_negatives, seed=seed)
    selector.add(q_rows, knn, q_vecs)
    return selector.result()


class PairSelector:
    """`select_pairs` fed batch by batch (the mine stage selects one batch while FAISS searches the
    next). Each query's pairs depend on its own neighbours only, so the columns are the same
    whatever the batches: `add` the batches in query order, then take `result()` once."""

    def __init__(self, views: list[str], bands: dict[str, tuple[float, float]], mats: dict[str, np.ndarray],
                 ids: list[str], *, near_duplicate: dict[str, float], max_targets: int, num_hard_negatives: int,
                 seed: int) -> None:
        self.views, self.bands, self.mats, self.ids = views, bands, mats, ids
        self.near_duplicate, self.cap, self.num_hard_negatives, self.seed = (
            near_duplicate, max_targets, num_hard_negatives, seed)
        self.acc = _Acc(views, list(mats), num_hard_negatives)

    def add(self, q_rows: np.ndarray, knn: dict[str, tuple[np.ndarray, np.ndarray]],
            q_vecs: dict[str, np.ndarray] | None = None) -> None:
        q_rows = np.asarray(q_rows, dtype=np.int64)
        mats = self.mats
        for i in range(0, len(q_rows), SELECT_BLOCK):
            sl = slice(i, i + SELECT_BLOCK)
            qv = {v: q_vecs[v][sl] if q_vecs and v in q_vecs else mats[v][q_rows[sl]] for v in mats}
            _select_block(q_rows[sl], qv, {v: (knn[v][0][sl], knn[v][1][sl]) for v in self.views}, self.bands,
                          mats, max(len(self.ids), 1), self.near_duplicate, self.cap, self.num_hard_negatives,
                          self.seed, self.acc)

    def result(self, arrow: bool = False) -> tuple[dict[str, Any], Stats]:
        """The columns (see `select_pairs`); `arrow`: the text and list columns as Arrow arrays
        (`ids` may then be one already), for writing without a Python object per value."""
        return self.acc.columns(self.views, self.bands, self.mats, self.ids, arrow)


class _Acc:
    """Per-block results, joined into columns once."""

    def __init__(self, views: list[str], score_views: list[str], num_hard_negatives: int) -> None:
        zeros = lambda: {v: np.zeros(len(HIST_BINS) - 1, np.int64) for v in views}  # noqa: E731
        self.stats = Stats(kept_by_view={v: 0 for v in views})
        self.hist_all, self.hist_kept = zeros(), zeros()
        none = np.zeros(0, np.int64)  # the part that stands for no pairs at all
        self.parts: list[dict[str, np.ndarray]] = [{
            "q": none, "t": none, "mask": none, "pos": none, "hns": np.zeros((0, num_hard_negatives), np.int64),
            **{f"s:{v}": np.zeros(0, np.float32) for v in score_views}}]

    def columns(self, views, bands, mats, ids, arrow: bool = False) -> tuple[dict[str, list | np.ndarray], Stats]:
        keys = ("q", "t", "mask", "pos", "hns", *(f"s:{v}" for v in mats))
        cat = {k: np.concatenate([p[k] for p in self.parts]) for k in keys}
        scores = {v: cat[f"s:{v}"] for v in mats}
        mask_bits = np.stack([(cat["mask"] >> vi & 1).astype(bool) for vi in range(len(views))], 1)  # (P, V)
        margin = np.stack([scores[v] - bands[v][0] for v in views], 1)  # (P, V): how far inside the band
        best = np.where(mask_bits, margin, -np.inf).argmax(1) if len(margin) else np.zeros(0, np.int64)
        names = np.asarray(views, dtype=object)
        lookup = [names[[(m >> vi) & 1 == 1 for vi in range(len(views))]].tolist() for m in range(1 << len(views))]
        hns = cat["hns"]  # (P, n): [0] is the query, valid entries first, -1 after
        valid = hns >= 0
        ends = np.cumsum(valid.sum(1))
        for vi, v in enumerate(views):
            self.stats.kept_by_view[v] = int(mask_bits[:, vi].sum())
        self.stats.hist_all = {v: h.tolist() for v, h in self.hist_all.items()}
        self.stats.hist_kept = {v: h.tolist() for v, h in self.hist_kept.items()}
        # taken as Arrow arrays in C++ (no Python string per row); as Python lists unless `arrow`
        id_arr = ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
        text = {"query_id": id_arr.take(cat["q"]), "target_id": id_arr.take(cat["t"]),
                "found_by": pa.array(lookup, pa.list_(pa.string())).take(cat["mask"]),
                "best_view": pa.array(views, pa.string()).take(best),
                "hard_negatives": pa.ListArray.from_arrays(pa.array(np.r_[0, ends], pa.int32()),
                                                           id_arr.take(hns[valid]))}
        if not arrow:
            text = {k: v.to_pylist() for k, v in text.items()}
        columns = {
            "query_id": text["query_id"], "target_id": text["target_id"], "found_by": text["found_by"],
            "best_view": text["best_view"],
            "best_score": np.stack([scores[v] for v in views], 1)[np.arange(len(best)), best].astype(np.float32),
            **{f"score_{v}": scores[v].astype(np.float32) for v in mats},
            "hard_negatives": text["hard_negatives"], "pair_rank": cat["pos"].astype(np.int32),
        }
        return columns, self.stats


def _select_block(q_rows, q_vec, knn, bands, mats, n_all, near_duplicate, cap, num_hard_negatives, seed,
                  acc: _Acc) -> None:
    views = list(knn)
    stats = acc.stats
    Q = len(q_rows)
    cand_q, cand_t, cand_rank, cand_view, cand_in, cand_s = [], [], [], [], [], []
    for vi, v in enumerate(views):
        s, r = knn[v]
        valid = (r >= 0) & (r != q_rows[:, None])  # (Q, K)
        rank = np.cumsum(valid, axis=1) - 1  # rank among valid neighbours
        lo, hi = bands[v]
        inband = valid & (s > lo) & (s < hi)
        acc.hist_all[v] += _hist(s[valid])
        stats.add(f"above_band:{v}", int((valid & (s >= hi)).sum()))
        stats.add(f"below_band:{v}", int((valid & (s <= lo)).sum()))
        qi, ki = np.nonzero(valid)
        cand_q.append(qi)
        cand_t.append(r[qi, ki])
        cand_rank.append(rank[qi, ki])
        cand_view.append(np.full(len(qi), vi))
        cand_in.append(inband[qi, ki])
        cand_s.append(s[qi, ki])
    cq, ct = np.concatenate(cand_q), np.concatenate(cand_t).astype(np.int64)
    crank, cview, cin = np.concatenate(cand_rank), np.concatenate(cand_view), np.concatenate(cand_in)

    # Found pairs: in-band (query, target), merged over views.
    fkey = cq[cin] * n_all + ct[cin]
    order = np.lexsort((cview[cin], crank[cin], fkey))
    fkey, frank, fview = fkey[order], crank[cin][order], cview[cin][order]
    if not len(fkey):
        return
    starts = _group_starts(fkey)
    pk = fkey[starts]
    p_q, p_t = pk // n_all, pk % n_all  # query position in block, target row
    p_rank = frank[starts]  # best rank (sorted by rank within the pair)
    p_mask = np.bitwise_or.reduceat(np.left_shift(1, fview), starts)
    p_first = np.minimum.reduceat(fview, starts)
    p_nviews = np.bitwise_count(p_mask).astype(np.int64)
    # Final order within each query: found by more views, best rank, view order, row.
    order = np.lexsort((p_t, p_first, p_rank, -p_nviews, p_q))
    p_q, p_t, p_mask = p_q[order], p_t[order], p_mask[order]

    near_views = [v for v in mats if v in near_duplicate]
    e_max = sum(knn[v][1].shape[1] for v in views)  # the most targets a query can have: fixed for the run
    ex = _examine(p_q, p_t, Q, q_vec, mats, near_views, near_duplicate, cap, 3 * cap, e_max)
    kept = ex.kept
    stats.add("near_duplicate", int(ex.near.sum()))
    stats.add("near_duplicate_target", int(ex.twin.sum()))
    stats.add("over_cap", int(len(p_q) - kept.sum() - ex.near.sum() - ex.twin.sum()))
    k_idx = np.flatnonzero(kept)
    kq, kt, kmask = p_q[k_idx], p_t[k_idx], p_mask[k_idx]
    scores = {}
    for vi, v in enumerate(views):  # near views were scored while examining; the others only for kept pairs
        scores[v] = ex.q_score[v][k_idx] if v in ex.q_score else _known_or_scored(
            kq, kt, cq[cview == vi], ct[cview == vi], np.concatenate(cand_s)[cview == vi], n_all, q_vec[v], mats[v])

    # one spare candidate per slot, so that dropping near-copies of the target still fills the list
    negs = _hard_negatives(q_rows, cq, ct, kq, kt, Q, n_all, 2 * num_hard_negatives - 1, seed)
    negs, n_twin = _negatives_without_copies(negs, k_idx, kq, kt, p_q, p_t, n_all, ex, mats, near_views,
                                             near_duplicate, num_hard_negatives - 1)
    stats.add("near_duplicate_negative", n_twin)
    for vi, v in enumerate(views):
        acc.hist_kept[v] += _hist(scores[v][(kmask >> vi & 1).astype(bool)])
    acc.parts.append({"q": q_rows[kq], "t": kt, "mask": kmask, "pos": ex.kpos[k_idx],
                      "hns": np.concatenate([q_rows[kq][:, None], negs], 1), **{f"s:{v}": scores[v] for v in mats}})


def _known_or_scored(kq, kt, vq, vt, vs, n_all, q_vec, mat) -> np.ndarray:
    """Scores of pairs (kq, kt) in one view: the search's exact score where this view retrieved
    the target for the query (vq, vt, vs), else an inner product of the two rows."""
    key, vkey = kq * n_all + kt, vq * n_all + vt
    order = np.argsort(vkey)
    vkey, vs = vkey[order], vs[order]
    at = np.minimum(np.searchsorted(vkey, key), max(len(vkey) - 1, 0))
    known = (vkey[at] == key) if len(vkey) else np.zeros(len(key), bool)
    out = np.where(known, vs[at] if len(vs) else 0, 0).astype(np.float32)
    rest = np.flatnonzero(~known)
    step = EXAMINE_CHUNK * 8  # rows gathered, converted and multiplied while in cache
    for i in range(0, len(rest), step):
        r = rest[i : i + step]
        out[r] = np.einsum("pd,pd->p", q_vec[kq[r]], mat[kt[r]])
    return out


class _Examined:
    """Per found pair (P,): examined, near (copy of the query), twin (copy of an earlier target),
    kept, kpos (rank among the query's kept); q_score[view] (P,) for near views; and, for the
    target-target checks of hard negatives, each pair's window (round, row, slot) and the rounds'
    (A, e, e) near-duplicate matrices."""

    def __init__(self, P: int, near_views: list[str]) -> None:
        self.examined, self.near, self.twin, self.kept = (np.zeros(P, bool) for _ in range(4))
        self.kpos = np.zeros(P, np.int64)
        self.q_score = {v: np.zeros(P, np.float32) for v in near_views}
        self.round, self.row, self.slot = (np.zeros(P, np.int64) for _ in range(3))
        self.copies: list[np.ndarray] = []


def _examine(p_q, p_t, Q, q_vec, mats, near_views, near_duplicate, cap, window, e_max) -> _Examined:
    """Walk each query's found targets (sorted best first) until `cap` are kept: a target is
    dropped when it copies the query, or copies one of the previous window - 1 targets that did
    not copy the query, in any near-duplicate view. Windows of `e` targets per query, gathered
    once; queries that did not fill their cap in the window go again with twice the window.
    The window sizes (cap, 2 cap, ... up to e_max) depend on nothing else: BLAS sums a dot
    product in an order that depends on the matrix shape, so a window sized by the block's
    longest list (as before) changed the scores' last bits with the blocks and shards."""
    P = len(p_q)
    ex = _Examined(P, near_views)
    qs = np.searchsorted(p_q, np.arange(Q + 1))
    count = np.diff(qs)
    pos = np.arange(P) - qs[p_q]  # position within the query's list
    active, e = np.flatnonzero(count > 0), cap
    while len(active):
        e = int(min(e, e_max))
        row_of = np.full(Q, -1)
        row_of[active] = np.arange(len(active))
        sel = np.flatnonzero((row_of[p_q] >= 0) & (pos < e))  # the pairs in this round's windows
        row, slot = row_of[p_q[sel]], pos[sel]
        A = len(active)
        present = np.zeros((A, e), bool)
        present[row, slot] = True
        near_q = np.zeros((A, e), bool)
        copies = np.zeros((A, e, e), bool)
        # `row` does not decrease along `sel`: chunks of EXAMINE_CHUNK windows are runs of it
        bounds = np.searchsorted(row, np.arange(0, A + EXAMINE_CHUNK, EXAMINE_CHUNK).clip(max=A))
        for v in near_views:
            for c, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
                a0, a1 = c * EXAMINE_CHUNK, min(A, (c + 1) * EXAMINE_CHUNK)
                r, sl = row[lo:hi] - a0, slot[lo:hi]
                g = mats[v][p_t[sel[lo:hi]]]  # (hi - lo, D) float32: one gather per chunk and view
                if hi - lo == (a1 - a0) * e:  # every window full (the usual case): the gather is the tensor
                    x = g.reshape(a1 - a0, e, -1)
                else:
                    x = np.zeros((a1 - a0, e, g.shape[1]), np.float32)
                    x[r, sl] = g
                s = np.matmul(x, q_vec[v][active[a0:a1]][:, :, None])[:, :, 0]  # (chunk, e) query-target
                ex.q_score[v][sel[lo:hi]] = s[r, sl]
                near_q[a0:a1] |= s >= near_duplicate[v]
                # (chunk, e, e). A copy as the right operand: numpy sends x @ x.T of one buffer to
                # syrk, 3-4x slower than gemm for these (e, D) windows (same values up to the last bits)
                copies[a0:a1] |= np.matmul(x, x.copy().transpose(0, 2, 1)) >= near_duplicate[v]
        cand = present & ~near_q
        lpos = np.cumsum(cand, axis=1) - 1  # position among the targets that do not copy the query
        earlier = np.tri(e, k=-1, dtype=bool)[None] & (lpos[:, :, None] - lpos[:, None, :] < window)
        twin = cand & (copies & earlier & cand[:, None, :]).any(2)
        keep = cand & ~twin
        kpos = np.cumsum(keep, axis=1) - 1
        done = (keep.sum(1) >= cap) | (count[active] <= e)
        ex.examined[sel] = True
        ex.near[sel], ex.twin[sel] = near_q[row, slot], twin[row, slot]
        ex.kept[sel] = keep[row, slot] & (kpos[row, slot] < cap)
        ex.kpos[sel] = kpos[row, slot]
        ex.round[sel], ex.row[sel], ex.slot[sel] = len(ex.copies), row, slot
        ex.copies.append(copies)
        active, e = active[~done], 2 * e
    return ex


def _negatives_without_copies(negs, k_idx, kq, kt, p_q, p_t, n_all, ex: _Examined, mats, near_views,
                              near_duplicate, keep: int) -> tuple[np.ndarray, int]:
    """The first `keep` candidates per kept pair (negs (K, m), in order) that are no near-duplicate
    of the pair's target, -1 padded, and how many candidates were dropped as such. Candidates are
    checked column by column, only while a pair still needs one; a candidate that was examined
    for the same query takes its verdict from that window, others are gathered."""
    K, m = negs.shape
    out = np.full((K, keep), -1, np.int64)
    got = np.zeros(K, np.int64)
    dropped = 0
    ex_idx = np.flatnonzero(ex.examined)
    ex_keys = p_q[ex_idx] * n_all + p_t[ex_idx]  # sorted: pairs are sorted by query, keys unique
    order = np.argsort(ex_keys)
    ex_keys, ex_idx = ex_keys[order], ex_idx[order]
    for j in range(m):
        act = np.flatnonzero((got < keep) & (negs[:, j] >= 0))
        if not len(act):
            continue
        c = negs[act, j]
        near = np.zeros(len(act), bool)
        if near_views:
            key = kq[act] * n_all + c
            at = np.minimum(np.searchsorted(ex_keys, key), max(len(ex_keys) - 1, 0))
            seen = (ex_keys[at] == key) if len(ex_keys) else np.zeros(len(act), bool)
            t_pair, c_pair = k_idx[act[seen]], ex_idx[at[seen]]
            for r, copies in enumerate(ex.copies):  # both pairs of a query share its last window
                on = ex.round[t_pair] == r
                near[np.flatnonzero(seen)[on]] = copies[ex.row[t_pair[on]], ex.slot[t_pair[on]], ex.slot[c_pair[on]]]
            rest = np.flatnonzero(~seen)
            for v in near_views:
                if len(rest):
                    s = np.einsum("pd,pd->p", mats[v][kt[act[rest]]], mats[v][c[rest]])
                    near[rest] |= s >= near_duplicate[v]
        dropped += int(near.sum())
        ok = act[~near]
        out[ok, got[ok]] = negs[ok, j]
        got[ok] += 1
    return out, dropped


def _hard_negatives(q_rows, cq, ct, p_q, p_t, Q, n_all, n_neg, seed) -> np.ndarray:
    """For each kept pair: up to n_neg - 1 other images retrieved for its query, as rows (P, n-1)
    padded with -1 (the caller prepends the query image). Other kept targets come first, then a
    seeded order."""
    if n_neg <= 1 or len(p_q) == 0:
        return np.full((len(p_q), max(n_neg - 1, 0)), -1, dtype=np.int64)
    # Unique candidates per query (any view).
    ukey = np.sort(cq * n_all + ct)  # np.unique, 3-4x faster here (numpy 2.x's unique hashes)
    ukey = ukey[np.r_[True, ukey[1:] != ukey[:-1]]] if len(ukey) else ukey
    u_q, u_t = ukey // n_all, ukey % n_all
    u_start = np.searchsorted(u_q, np.arange(Q + 1))
    counts = u_start[1:] - u_start[:-1]  # (Q,)
    # Dense (P, C): every kept pair x every candidate of its query, in row order, -1 padded.
    C = int(counts[p_q].max())
    j = np.arange(C)[None, :]
    inside = j < counts[p_q][:, None]
    cand = np.where(inside, u_t[np.minimum(u_start[p_q][:, None] + j, len(u_t) - 1)], -1)
    valid = inside & (cand != p_t[:, None])
    kept_keys = np.sort(p_q * n_all + p_t)
    ck = p_q[:, None] * n_all + cand
    pos = np.minimum(np.searchsorted(kept_keys, ck), len(kept_keys) - 1)
    is_target = kept_keys[pos] == ck
    h = mix64(seed, q_rows[p_q][:, None], p_t[:, None], cand)
    rank = np.where(valid, np.where(is_target, 0, 1), 2)  # other kept targets, the rest, none
    order = np.lexsort((h, rank), axis=1)[:, : n_neg - 1]  # each row on its own, stable
    out = np.take_along_axis(cand, order, 1)
    out[np.take_along_axis(rank, order, 1) == 2] = -1
    if out.shape[1] < n_neg - 1:
        out = np.pad(out, ((0, 0), (0, n_neg - 1 - out.shape[1])), constant_values=-1)
    return out
