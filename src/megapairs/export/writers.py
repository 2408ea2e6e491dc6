"""The triplet schema, and writing one shard as JSONL or a WebDataset tar (atomic). A Parquet shard
is the plan's row group written as it is (`artifacts.write_table`)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from megapairs.artifacts import atomic_write_bytes, temp_file

MEGAPAIRS_FIELDS = ("q_img", "q_text", "t_img", "hns")


def triplet_schema(score_columns: list[str]) -> pa.Schema:
    """The released MegaPairs fields first, then provenance."""
    s, f, ls = pa.string(), pa.float64(), pa.list_(pa.string())
    return pa.schema([
        ("q_img", s), ("q_text", ls), ("t_img", s), ("hns", ls),
        ("key", s), ("q_id", s), ("t_id", s), ("hn_ids", ls),
        ("view", s), ("found_by", ls), ("similarity", f), *[(c, f) for c in score_columns],
        ("pair_rank", pa.int32()), ("description", s), ("describer", s), ("writer", s),
        ("writer_used", s), ("prompt_version", s), ("annotation_status", s),
        ("q_caption", s), ("t_caption", s),
    ])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_webdataset(path: Path, rows: list[dict[str, Any]], image_bytes: Callable[[str], bytes], ext: str) -> None:
    """One sample per triplet: `<key>.json` (the row, paths relative to the dataset folder),
    `<key>.q.<ext>`, `<key>.t.<ext>` and `<key>.hn1.<ext>` ... for hns[1:] (hns[0] is the query,
    so its pixels are not stored twice). Member metadata is fixed, so equal input gives equal bytes."""
    fd, tmp = temp_file(path)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for r in rows:
                key = r["key"]
                _add(tar, f"{key}.json", json.dumps(r, ensure_ascii=False).encode("utf-8"))
                _add(tar, f"{key}.q.{ext}", image_bytes(r["q_id"]))
                _add(tar, f"{key}.t.{ext}", image_bytes(r["t_id"]))
                for j, h in enumerate(r["hn_ids"][1:], start=1):
                    _add(tar, f"{key}.hn{j}.{ext}", image_bytes(h))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
