"""Training triplets as one Arrow file (q_img, q_text, t_img, hns with absolute image paths; t_caption
where the table has one) that every process memory-maps, so the rows cost page cache, not process
memory, at any number of rows.

Built table by table in batches. Parquet tables whose four fields are plain strings / string lists
(our export, the released MegaPairs data, their column aliases) are converted with Arrow compute:
a relative path becomes `<base>/<path>`, where `<base>` is the resolved folder `reader.table_base`
picks (as `read_triplets` does). Paths with `.`/`..` parts or doubled slashes are resolved one by one
like `read_triplets` resolves them; symlinks inside the dataset folder are not followed (0.2 followed
them). Other tables (JSONL, JSON, tars, image structs) go through `read_triplets` row by row, in batches.

The file is named by the caller and carries a fingerprint of its sources in its schema metadata;
a file whose fingerprint matches is reused (a resumed run maps it again without rebuilding).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from megapairs.export import reader

SCHEMA = pa.schema([("q_img", pa.string()), ("q_text", pa.list_(pa.string())), ("t_img", pa.string()),
                    ("hns", pa.list_(pa.string())), ("t_caption", pa.string())])
# The target image's caption (our export's `t_caption`), null where a table has none: only the
# caption loss (`TrainConfig.caption_loss_weight`) reads it.
CAPTION_NAMES = ("t_caption", "target_caption")
BATCH = 1 << 16
# A path part "." or "..", or an empty part: these need Path.resolve()'s normalisation.
ODD_PATH = r"(^|/)\.\.?(/|$)|//|/$"
FINGERPRINT = b"megapairs.triplets"


def fingerprint(path: Path, split: str | None, image_root: Path | None) -> str:
    tables = reader.find_tables(path, split)
    return json.dumps({"version": 2, "split": split, "image_root": str(image_root) if image_root else None,
                       "tables": [[str(t), t.stat().st_size, t.stat().st_mtime_ns] for t in tables]})


def triplet_batches(path: Path, split: str | None, image_root: Path | None) -> Iterator[pa.RecordBatch]:
    """The triplets of `split` under `path` (resolved), as record batches with SCHEMA."""
    root = reader.dataset_root(path)
    for table in reader.find_tables(path, split):
        fields = _fast_fields(table)
        yield from (_parquet_batches(table, fields, root, image_root) if fields
                    else _row_batches(table, root, image_root))


def _fast_fields(table: Path) -> dict[str, str] | None:
    """Column name per field when a Parquet table can be converted by columns, else None."""
    if not table.name.endswith(".parquet"):
        return None
    schema = pq.read_schema(table)
    names = set(schema.names)
    out: dict[str, str] = {}
    for f in ("q_img", "q_text", "t_img", "hns"):
        name = next((a for a in reader.ALIASES[f] if a in names), None)
        if name is None:
            if f == "hns":
                continue
            return None
        t = schema.field(name).type
        ok = {"q_img": pa.types.is_string, "t_img": pa.types.is_string,
              "q_text": lambda x: pa.types.is_string(x) or (pa.types.is_list(x) and pa.types.is_string(x.value_type)),
              "hns": lambda x: pa.types.is_list(x) and pa.types.is_string(x.value_type)}[f](t)
        if not ok:
            return None
        out[f] = name
    caption = next((a for a in CAPTION_NAMES if a in names), None)
    if caption is not None:
        if not pa.types.is_string(schema.field(caption).type):
            return None
        out["t_caption"] = caption
    return out


def _parquet_batches(table: Path, fields: dict[str, str], root: Path,
                     image_root: Path | None) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(table)
    base: str | None = None
    for batch in pf.iter_batches(batch_size=BATCH, columns=sorted(set(fields.values()))):
        if batch.num_rows == 0:
            continue
        col = {f: batch.column(name) for f, name in fields.items()}
        if col["q_img"].null_count or col["t_img"].null_count:
            raise ValueError(f"{table}: a row has no query or target image path")
        if base is None:
            base = str(reader.table_base(table, root, image_root, col["q_img"][0].as_py()))
        texts = col["q_text"]
        if pa.types.is_string(texts.type):  # one instruction per row (none where null)
            lengths = texts.is_valid().to_numpy(zero_copy_only=False).astype(np.int32)
            texts = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
                                             texts.drop_null())
        else:
            texts = pc.fill_null(texts, pa.scalar([], texts.type))
            flat = pc.fill_null(pc.list_flatten(texts), "None")  # str(None), as read_triplets writes it
            texts = pa.ListArray.from_arrays(_offsets(texts), flat)
        if "hns" in col:
            hns = pc.fill_null(col["hns"], pa.scalar([], col["hns"].type))
            hns = pa.ListArray.from_arrays(_offsets(hns), _absolute(pc.list_flatten(hns), base))
        else:
            hns = pa.ListArray.from_arrays(pa.array([0] * (batch.num_rows + 1), pa.int32()), pa.array([], pa.string()))
        caption = col.get("t_caption", pa.nulls(batch.num_rows, pa.string()))
        yield pa.record_batch([_absolute(col["q_img"], base), texts, _absolute(col["t_img"], base), hns, caption],
                              schema=SCHEMA)


def _offsets(lists: pa.ListArray) -> pa.Array:
    """Offsets of a list array starting at 0 (a sliced array's own offsets do not)."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))


def _absolute(paths: pa.Array, base: str) -> pa.Array:
    """`read_triplets`'s absolute path of each path: kept when absolute, else `<base>/<path>`."""
    if paths.null_count:
        raise ValueError("an image path is missing (null)")
    joined = pc.if_else(pc.starts_with(paths, "/"), paths, pc.binary_join_element_wise(base, paths, "/"))
    odd = pc.match_substring_regex(paths, ODD_PATH).to_numpy(zero_copy_only=False)
    if not odd.any():
        return joined
    values = joined.to_pylist()
    raw = paths.to_pylist()
    for i in odd.nonzero()[0].tolist():
        p = Path(raw[i])
        values[i] = str(p if p.is_absolute() else (Path(base) / p).resolve())
    return pa.array(values, pa.string())


def _row_batches(table: Path, root: Path, image_root: Path | None) -> Iterator[pa.RecordBatch]:
    cols: dict[str, list] = {c: [] for c in SCHEMA.names}
    base: Path | None = None
    for row in reader.iter_table(table):
        if base is None:
            base = reader.table_base(table, root, image_root, reader._path_value(reader._field(row, "q_img")))
        t = reader.triplet_of(row, base)
        caption = next((t[a] for a in CAPTION_NAMES if t.get(a) is not None), None)
        t["t_caption"] = None if caption is None else str(caption)
        for c in SCHEMA.names:
            cols[c].append(t[c])
        if len(cols["q_img"]) >= BATCH:
            yield pa.record_batch([cols[c] for c in SCHEMA.names], schema=SCHEMA)
            cols = {c: [] for c in SCHEMA.names}
    if cols["q_img"]:
        yield pa.record_batch([cols[c] for c in SCHEMA.names], schema=SCHEMA)


def build(path: Path, split: str | None, image_root: Path | None, dest: Path | None) -> pa.Table:
    """The triplets as a table: written to `dest` and memory-mapped (reused when its fingerprint
    matches), or in memory when `dest` is None."""
    if dest is None:
        return pa.Table.from_batches(list(triplet_batches(path, split, image_root)), schema=SCHEMA)
    stamp = fingerprint(path, split, image_root).encode()
    if not current(dest, stamp):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
        schema = SCHEMA.with_metadata({FINGERPRINT: stamp})
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
            for batch in triplet_batches(path, split, image_root):
                writer.write_batch(batch)
        tmp.replace(dest)
    return open_mapped(dest)


def current(dest: Path, stamp: bytes) -> bool:
    if not dest.exists():
        return False
    try:
        return ipc.open_file(pa.memory_map(str(dest))).schema.metadata.get(FINGERPRINT) == stamp
    except (pa.ArrowInvalid, OSError, AttributeError):
        return False


def open_mapped(dest: Path) -> pa.Table:
    return ipc.open_file(pa.memory_map(str(dest))).read_all().replace_schema_metadata(None)
