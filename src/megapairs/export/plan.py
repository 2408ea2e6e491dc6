"""The export plan on columns: join pairs with annotations, split, confine negatives, order, and write
the frozen rows, with integer arrays instead of a Python dict per triplet.

Same result as the row-by-row rules of `triplets.py` and `split.py` (tests/export check both on the
fixture run and on random inputs). Inputs are memory-mapped Arrow copies of the artifacts (see
`columns.map_artifact`); ids become codes in one sorted vocabulary of every id seen. Within a split,
rows sort by (seeded key of `<q_id>_<t_id>`, query id, target id); the key alone decides unless two
64-bit hashes collide (the row-by-row code broke such ties by the key string).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from megapairs.artifacts import Artifact
from megapairs.export import layout
from megapairs.export.columns import (
    clean_instruction_lists,
    codes_of,
    map_artifact,
    pick_negative_codes,
    relpaths,
    sorted_vocab,
    take_rows,
)
from megapairs.export.config import ExportConfig
from megapairs.export.split import DROPPED, VAL, SplitResult, assign_split_codes, confine_codes, seeded_keys

S, F, LS = pa.string(), pa.float64(), pa.list_(pa.string())
PAIR_COLUMNS = {"query_id": S, "target_id": S, "hard_negatives": LS, "best_view": S, "found_by": LS,
                "best_score": F, "pair_rank": pa.int32()}
ANN_COLUMNS = {"query_id": S, "target_id": S, "status": S, "reason": S, "instructions": LS,
               "writer_used": S, "description": S, "describer": S, "writer": S, "prompt_version": S}
CORPUS_COLUMNS = {"id": S, "status": S, "caption": S}
BLOCK = 1 << 17  # rows gathered at once when writing the frozen rows


@dataclass
class Plan:
    """Every kept triplet (pairs order) as indices and codes; `order[s]` lists split s's rows in output order."""

    vocab: pa.Array  # sorted distinct ids
    pairs: pa.Table
    annotations: pa.Table
    corpus: pa.Table
    corpus_pos: np.ndarray  # per code: its row in `corpus`, -1 if not usable
    pair_row: np.ndarray
    ann_row: np.ndarray
    q: np.ndarray
    t: np.ndarray
    hn: np.ndarray  # flat hns codes (query first), after confinement
    hn_offsets: np.ndarray
    n_text: np.ndarray  # instructions per triplet
    assignment: np.ndarray
    order: dict[str, np.ndarray]
    split: SplitResult
    score_columns: list[str]
    dropped: Counter = field(default_factory=Counter)
    annotation_status: Counter = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)


def _load(corpus: Artifact, pairs: Artifact, annotations: Artifact, scratch: Path) -> tuple[pa.Table, ...]:
    names = pq.read_schema(pairs.shard_path(pairs.shard_indices()[0])).names if pairs.shard_indices() else []
    score_columns = [c for c in names if c.startswith("score_")]
    p = map_artifact(pairs, scratch / "pairs.arrow", {**PAIR_COLUMNS, **{c: F for c in score_columns}})
    a = map_artifact(annotations, scratch / "annotations.arrow", ANN_COLUMNS)
    c = map_artifact(corpus, scratch / "corpus.arrow", CORPUS_COLUMNS, with_position=True)
    return p, a, c, score_columns


def make_plan(corpus: Artifact, pairs: Artifact, annotations: Artifact, config: ExportConfig,
              scratch: Path) -> Plan:
    p, a, c, score_columns = _load(corpus, pairs, annotations, scratch)
    # usable corpus rows: status ok, first occurrence of an id
    ok = np.flatnonzero(pc.fill_null(pc.equal(c["status"], "ok"), False).to_numpy(zero_copy_only=False))
    ok_ids = take_rows(c["id"], ok)
    vocab = sorted_vocab([ok_ids, p["query_id"], p["target_id"], a["query_id"], a["target_id"]])
    m = len(vocab)
    ok_codes = codes_of(ok_ids, vocab)
    codes, first_ok = np.unique(ok_codes, return_index=True)
    corpus_pos = np.full(m, -1, dtype=np.int64)
    corpus_pos[codes] = ok[first_ok]
    usable = corpus_pos >= 0

    plan_notes: Counter = Counter()
    dropped: Counter = Counter()
    # annotations: first row per (query, target); statuses; one failure reason per status
    status = pc.fill_null(a["status"], "ok")
    ann_status = Counter({k["values"]: k["counts"] for k in pc.value_counts(status).to_pylist()})
    failure_examples = _failure_examples(status, a["reason"])
    aq, at = codes_of(a["query_id"], vocab), codes_of(a["target_id"], vocab)
    akeys, afirst = np.unique(aq * m + at, return_index=True)
    plan_notes["duplicate_annotation"] += a.num_rows - len(akeys)
    ann_ok = pc.equal(status, "ok").to_numpy(zero_copy_only=False)
    writer_used = pc.fill_null(a["writer_used"], "")
    excluded = np.zeros(a.num_rows, dtype=bool)
    for prefix in config.exclude_writers:
        excluded |= pc.starts_with(writer_used, prefix).to_numpy(zero_copy_only=False)
    n_text_ann = _instruction_counts(a["instructions"])

    # pairs, in order: the first of each (query, target), then the drop reasons in triplets.py's order
    q_all, t_all = codes_of(p["query_id"], vocab), codes_of(p["target_id"], vocab)
    keys = q_all * m + t_all
    _, first = np.unique(keys, return_index=True)
    cand = np.zeros(p.num_rows, dtype=bool)
    cand[first] = True
    dropped["duplicate_pair"] += p.num_rows - len(first)
    at_pos = np.minimum(np.searchsorted(akeys, keys), max(len(akeys) - 1, 0))
    found = (akeys[at_pos] == keys) if len(akeys) else np.zeros(p.num_rows, dtype=bool)
    ann_row = np.where(found, afirst[at_pos] if len(akeys) else 0, -1)
    plan_notes["annotations_without_pair"] += int(len(akeys) - np.isin(akeys, keys[cand]).sum())
    r = np.maximum(ann_row, 0)
    for reason, bad in (("no_annotation", ~found),
                        ("annotation_failed", ~ann_ok[r] & (not config.include_failed)),
                        ("writer_excluded", excluded[r]),
                        ("too_few_instructions", n_text_ann[r] < config.min_instructions),
                        ("target_is_query", q_all == t_all),
                        ("query_unusable", ~usable[q_all]),
                        ("target_unusable", ~usable[t_all])):
        hit = cand & bad
        dropped[reason] += int(hit.sum())
        cand &= ~bad
    pair_row = np.flatnonzero(cand)
    q, t, ann_row = q_all[pair_row], t_all[pair_row], ann_row[pair_row]
    n_text = n_text_ann[ann_row]
    del q_all, t_all, keys, found, r, cand
    hn_parts, off_parts = [], []
    for s in range(0, len(pair_row), BLOCK * 4):
        sl = slice(s, s + BLOCK * 4)
        flat, off = pick_negative_codes(take_rows(p["hard_negatives"], pair_row[sl]), q[sl], t[sl], vocab,
                                        usable, config.num_hard_negatives, plan_notes)
        hn_parts.append(flat)
        off_parts.append(off[1:] - off[:-1])
    hn = np.concatenate(hn_parts) if hn_parts else np.zeros(0, np.int64)
    hn_offsets = np.concatenate([[0], np.cumsum(np.concatenate(off_parts) if off_parts else [])]).astype(np.int64)

    # split on queries and targets, then negatives follow (split.py)
    def name(code: int) -> str:
        return vocab[code].as_py()

    n = len(pair_row)
    qt = np.stack([q, t], axis=1).ravel()
    split = assign_split_codes(qt, np.arange(0, 2 * n + 1, 2), m, name, config.val_fraction, config.seed)
    assignment = np.asarray(split.assignment, dtype=np.int8)
    skey = seeded_keys(config.seed, _key_strings(vocab, q, t))
    keep = confine_codes(q, t, hn, hn_offsets, assignment, skey, m)
    removed = int(np.count_nonzero(~keep))
    lengths = np.bincount(np.repeat(np.arange(n), np.diff(hn_offsets))[keep], minlength=n)
    hn = hn[keep]
    hn_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_boundary = int(np.count_nonzero(assignment == DROPPED))
    if n_boundary:
        dropped["split_boundary"] += n_boundary
    if removed:
        dropped["hard_negatives_removed_by_split"] += removed

    order: dict[str, np.ndarray] = {}
    for code, split_name in ((0, layout.SPLITS[0]), (VAL, layout.SPLITS[1])):
        idx = np.flatnonzero(assignment == code)
        if config.shuffle:
            order[split_name] = idx[np.lexsort((t[idx], q[idx], skey[idx]))]
        else:
            rank = pc.fill_null(take_rows(p["pair_rank"], pair_row[idx]), 0).to_numpy().astype(np.int64)
            order[split_name] = idx[np.lexsort((t[idx], rank, q[idx]))]
    return Plan(vocab, p, a, c, corpus_pos, pair_row, ann_row, q, t, hn, hn_offsets, n_text, assignment, order,
                split, score_columns, Counter({k: v for k, v in dropped.items() if v}), ann_status, failure_examples,
                Counter({k: v for k, v in plan_notes.items() if v}))


def _key_strings(vocab: pa.Array, q: np.ndarray, t: np.ndarray) -> Iterator[str]:
    for s in range(0, len(q), BLOCK):
        keys = pc.binary_join_element_wise(vocab.take(pa.array(q[s:s + BLOCK])),
                                           vocab.take(pa.array(t[s:s + BLOCK])), "_")
        yield from keys.to_pylist()


def _instruction_counts(instructions: pa.ChunkedArray) -> np.ndarray:
    out = [clean_instruction_lists(instructions.slice(s, BLOCK))[1] for s in range(0, len(instructions), BLOCK)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _failure_examples(status: pa.ChunkedArray, reason: pa.ChunkedArray) -> dict[str, str]:
    """status -> the first non-empty reason of a row with that (not ok) status, in row order."""
    has = pc.and_(pc.not_equal(status, "ok"), pc.fill_null(pc.greater(pc.utf8_length(reason), 0), False))
    rows = np.flatnonzero(has.to_numpy(zero_copy_only=False))
    if not len(rows):
        return {}
    st = take_rows(status, rows).to_pylist()
    first: dict[str, int] = {}
    for s, row in zip(st, rows.tolist()):
        first.setdefault(s, row)
    return {s: str(reason[row].as_py())[:300] for s, row in sorted(first.items(), key=lambda kv: kv[1])}


# -- the frozen rows ------------------------------------------------------------------------------
def row_table(plan: Plan, idx: np.ndarray, schema: pa.Schema, ext: str) -> pa.Table:
    """The output rows of kept triplets `idx`, in that order, with `schema` (writers.triplet_schema)."""
    p, a = plan.pairs, plan.annotations
    prow, arow = plan.pair_row[idx], plan.ann_row[idx]
    q_ids, t_ids = plan.vocab.take(pa.array(plan.q[idx])), plan.vocab.take(pa.array(plan.t[idx]))
    flat, lengths = hn_of(plan, idx)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    hn_ids = plan.vocab.take(pa.array(flat))
    status = pc.fill_null(take_rows(a["status"], arow), "ok")
    captions = plan.corpus["caption"]
    cols: dict[str, Any] = {
        "q_img": relpaths(q_ids, ext), "q_text": clean_instruction_lists(take_rows(a["instructions"], arow))[0],
        "t_img": relpaths(t_ids, ext), "hns": pa.ListArray.from_arrays(offsets, relpaths(hn_ids, ext)),
        "key": pc.binary_join_element_wise(q_ids, t_ids, "_"), "q_id": q_ids, "t_id": t_ids,
        "hn_ids": pa.ListArray.from_arrays(offsets, hn_ids),
        "view": take_rows(p["best_view"], prow),
        "found_by": pc.fill_null(take_rows(p["found_by"], prow), pa.scalar([], LS)),
        "similarity": pc.round(take_rows(p["best_score"], prow), 6),
        **{c: pc.round(take_rows(p[c], prow), 6) for c in plan.score_columns},
        "pair_rank": take_rows(p["pair_rank"], prow),
        **{c: take_rows(a[c], arow) for c in ("description", "describer", "writer", "writer_used", "prompt_version")},
        "annotation_status": status,
        "q_caption": take_rows(captions, plan.corpus_pos[plan.q[idx]]),
        "t_caption": take_rows(captions, plan.corpus_pos[plan.t[idx]]),
    }
    return pa.table([cols[f.name] for f in schema], schema=schema)


def shard_rows(order: np.ndarray, shard_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(part, kept-triplet indices) for each output shard of one split."""
    for part, start in enumerate(range(0, len(order), shard_size)):
        yield part, order[start:start + shard_size]


def hn_of(plan: Plan, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat hns codes, lengths) of kept triplets `idx`, in that order."""
    starts, lengths = plan.hn_offsets[idx], plan.hn_offsets[idx + 1] - plan.hn_offsets[idx]
    return plan.hn[np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))], lengths


def image_owners(plan: Plan, shard_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image codes in id order, owner of each): the first shard whose rows use the image.
    `shard_of[i]` is kept triplet i's shard (-1: not written)."""
    idx = np.flatnonzero(shard_of >= 0)
    flat, lengths = hn_of(plan, idx)
    used = np.concatenate([plan.q[idx], plan.t[idx], flat])
    shard = np.concatenate([shard_of[idx], shard_of[idx], np.repeat(shard_of[idx], lengths)])
    owner = np.full(len(plan.vocab), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(owner, used, shard)
    codes = np.flatnonzero(owner != np.iinfo(np.int64).max)
    return codes, owner[codes]


class ImagePlan:
    """`_plan/images.parquet` as arrays (ids sorted): which shard writes each image and where in the
    corpus its pixels are. Positions index these arrays; no Python object per image."""

    def __init__(self, path: Path) -> None:
        t = pq.read_table(path)
        self.ids = t["id"].combine_chunks()
        self.paths = t["path"].combine_chunks()
        self.owner = t["owner"].to_numpy()
        self.corpus_shard = t["corpus_shard"].to_numpy()
        self.corpus_row = t["corpus_row"].to_numpy()
        self._by_owner = np.argsort(self.owner, kind="stable")  # within an owner: id order
        self._owners = self.owner[self._by_owner]

    def owned(self, shard: int) -> np.ndarray:
        """Positions of the images shard `shard` writes, in id order."""
        lo, hi = np.searchsorted(self._owners, [shard, shard + 1])
        return self._by_owner[lo:hi]

    def positions(self, ids: list[str]) -> np.ndarray:
        pos = codes_of(pa.array(ids, pa.string()), self.ids)
        if (pos < 0).any():
            raise RuntimeError("a row names an image the export plan does not list; rerun with --overwrite")
        return pos

    def id(self, pos: int) -> str:
        return self.ids[pos].as_py()

    def path(self, pos: int) -> str:
        return self.paths[pos].as_py()
