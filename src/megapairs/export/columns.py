"""Column tools of the export plan: input artifacts as memory-mapped Arrow files, id codes, and the
per-row rules of `triplets.py` (instruction cleaning, hard-negative picking) applied to whole columns.

Memory-mapped inputs are the point: a column of a mapped Arrow file is file-backed page cache, not
process memory, so the plan holds only the integer arrays it computes (a few per triplet), whatever
the number of rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from megapairs.artifacts import Artifact

# Python's str.split() whitespace (every c with c.isspace()), for `" ".join(s.split())` in RE2.
WHITESPACE = "[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
BATCH = 1 << 16


def map_artifact(art: Artifact, path: Path, columns: dict[str, pa.DataType], *,
                 with_position: bool = False) -> pa.Table:
    """Copy `columns` of an artifact's shards (in shard order) into one uncompressed Arrow file at
    `path` and memory-map it. Columns a shard lacks come back null. `with_position` adds `_shard`
    and `_row` (where the row sits in the artifact)."""
    fields = [pa.field(n, t) for n, t in columns.items()]
    if with_position:
        fields += [pa.field("_shard", pa.int32()), pa.field("_row", pa.int32())]
    schema = pa.schema(fields)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for shard in art.shard_indices():
            pf = pq.ParquetFile(art.shard_path(shard))
            have = [n for n in columns if n in pf.schema_arrow.names]
            row = 0
            for batch in pf.iter_batches(batch_size=BATCH, columns=have):
                n = batch.num_rows
                cols = [batch.column(name).cast(t) if name in have else pa.nulls(n, t) for name, t in columns.items()]
                if with_position:
                    cols += [pa.array(np.full(n, shard, np.int32)), pa.array(np.arange(row, row + n, dtype=np.int32))]
                writer.write_batch(pa.record_batch(cols, schema=schema))
                row += n
    tmp.replace(path)
    return ipc.open_file(pa.memory_map(str(path))).read_all()


def codes_of(values: pa.Array | pa.ChunkedArray, vocab: pa.Array) -> np.ndarray:
    """Position of each value in `vocab` (int64), -1 where absent or null."""
    return pc.fill_null(pc.index_in(values, value_set=vocab), -1).to_numpy().astype(np.int64)


def sorted_vocab(columns: list[pa.ChunkedArray | pa.Array]) -> pa.Array:
    """Distinct strings of the columns, sorted (so a code's order is its id's order)."""
    chunks = [c for col in columns for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col])]
    uniq = pc.unique(pa.chunked_array(chunks, type=pa.string()))
    uniq = uniq.filter(uniq.is_valid())
    return uniq.take(pc.sort_indices(uniq))


def relpaths(ids: pa.Array, ext: str) -> pa.Array:
    """`layout.image_relpath` of every id: images/<first two>/<id>.<ext>."""
    return pc.binary_join_element_wise("images/", pc.utf8_slice_codeunits(ids, 0, 2), "/", ids, f".{ext}", "")


def clean_instruction_lists(lists: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """`triplets.clean_instructions` on a whole list<string> column: whitespace runs collapsed, ends
    stripped, empties and repeats dropped, order kept. Returns (lists, count per row)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks() if lists.num_chunks != 1 else lists.chunk(0)
    n = len(lists)
    parent = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    cleaned = pc.utf8_trim(pc.replace_substring_regex(pc.list_flatten(lists), WHITESPACE, " "), " ")
    keep = np.flatnonzero(pc.fill_null(pc.greater(pc.utf8_length(cleaned), 0), False).to_numpy(zero_copy_only=False))
    first = np.zeros(len(cleaned), dtype=bool)
    if len(keep):
        code = pc.dictionary_encode(cleaned.take(pa.array(keep))).indices.to_numpy().astype(np.int64)
        _, at = np.unique(parent[keep] * (int(code.max()) + 1) + code, return_index=True)
        first[keep[at]] = True
    counts = np.bincount(parent[first], minlength=n).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), cleaned.filter(pa.array(first))), counts


def pick_negative_codes(mined: pa.Array | pa.ChunkedArray, q: np.ndarray, t: np.ndarray, vocab: pa.Array,
                        usable: np.ndarray, n: int, notes: Counter) -> tuple[np.ndarray, np.ndarray]:
    """`triplets.pick_negatives` on a column of mined lists (one per row, with the rows' query and
    target codes): (flat hns codes, offsets), the query first. Counts the same notes."""
    if isinstance(mined, pa.ChunkedArray):
        mined = mined.combine_chunks() if mined.num_chunks != 1 else mined.chunk(0)
    rows = len(mined)
    parent = pc.list_parent_indices(mined).to_numpy().astype(np.int64)
    h = codes_of(pc.list_flatten(mined), vocab)
    qq, tt = q[parent], t[parent]
    is_q = h == qq
    is_t = (h == tt) & ~is_q
    bad = ~is_q & ~is_t & ((h < 0) | ~usable[np.maximum(h, 0)])
    notes["negative_was_target"] += int(is_t.sum())
    notes["negative_unusable"] += int(bad.sum())
    lengths = pc.fill_null(pc.list_value_length(mined), 0).to_numpy().astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    has = lengths > 0
    notes["query_not_first_negative"] += int(np.count_nonzero(h[starts[has]] != q[has]))
    cand = np.flatnonzero(~is_q & ~is_t & ~bad)
    if len(cand):
        _, at = np.unique(parent[cand] * (len(vocab) + 1) + h[cand], return_index=True)
        cand = np.sort(cand[at])  # first copy of each negative, in list order
    p = parent[cand]
    rank = np.arange(len(cand)) - np.searchsorted(p, p)
    found = np.bincount(p, minlength=rows)
    notes["fewer_negatives_than_asked"] += int(np.count_nonzero(1 + found < n))
    take = rank < n - 1
    out_len = 1 + np.minimum(found, n - 1)
    offsets = np.concatenate([[0], np.cumsum(out_len)]).astype(np.int64)
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    out[offsets[:-1]] = q
    out[offsets[p[take]] + 1 + rank[take]] = h[cand[take]]
    return out, offsets


def take_rows(col: pa.ChunkedArray | pa.Array, idx: np.ndarray) -> pa.Array:
    """`col.take(idx)` chunk by chunk. Arrow's take on a chunked list column first concatenates the
    whole column (a copy of a memory-mapped file into process memory); this gathers from each chunk
    only the rows asked for, then restores the order of `idx`."""
    idx = np.asarray(idx, dtype=np.int64)
    if isinstance(col, pa.Array):
        return col.take(pa.array(idx))
    chunks = col.chunks
    if len(chunks) == 1:
        return chunks[0].take(pa.array(idx))
    if len(idx) == 0:
        return pa.array([], col.type)
    starts = np.concatenate([[0], np.cumsum([len(c) for c in chunks])])
    which = np.searchsorted(starts, idx, side="right") - 1
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(chunks) + 1))
    parts = [chunks[k].take(pa.array(idx[order[bounds[k]:bounds[k + 1]]] - starts[k]))
             for k in range(len(chunks)) if bounds[k] < bounds[k + 1]]
    gathered = pa.concat_arrays(parts)
    if np.all(order[1:] > order[:-1]):  # already in order (sorted indices)
        return gathered
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return gathered.take(pa.array(back))
