"""Reading triplet datasets: ours (this package's export) and the released MegaPairs layout alike.

`read_triplets(path)` yields one dict per triplet with absolute image paths::

    {"q_img": "/abs/q.jpg", "q_text": ["...", ...], "t_img": "/abs/t.jpg", "hns": ["/abs/q.jpg", ...], ...}

plus whatever other (non-image) fields the table has (`key`, `q_id`, scores...).

`path` may be a dataset folder or one table file (.parquet, .jsonl, .json, or a WebDataset .tar
whose samples carry a .json member). In a folder, `split` selects `<folder>/<split>/` (and `<folder>/jsonl/<split>/`,
`<folder>/webdataset/<split>/`) or files named
`<split>-*`/`<split>_*`/`<split>.*`; a folder with no split structure is read whole. When a folder
holds the same rows in several formats, only the first of Parquet, JSONL, JSON, tar is read.

Relative image paths are resolved against `image_root` if given, else against the first of: the
dataset folder, the table's folder and its parents up to the dataset folder's parent, in which the
first row's query image exists (checked once per table, not per row).
Column names of other MegaPairs loaders are accepted as aliases (e.g. `query_image`, `query_texts`,
`target_image`, `hard_negative_images`).
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from megapairs.errors import MissingField, UserError

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".tar")
SKIP_DIRS = {"images", "_plan", "assets", "__pycache__"}
MAX_DEPTH = 4
ALIASES: dict[str, tuple[str, ...]] = {
    "q_img": ("q_img", "query_image", "query_image_path", "query_img", "q_image"),
    "q_text": ("q_text", "query_texts", "query_text", "q_texts", "instructions"),
    "t_img": ("t_img", "target_image", "target_image_path", "target_img", "t_image", "pos_img"),
    "hns": ("hns", "hard_negative_images", "hard_negative_image_paths", "hn_imgs", "neg_imgs"),
}
SPLIT_NAMES = ("train", "validation", "val", "test")
FORMAT_FOLDERS = ("jsonl", "webdataset")  # our export keeps these formats in <format>/<split>/


def _walk_tables(folder: Path) -> list[Path]:
    out: list[Path] = []
    base_depth = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith((".", "_"))
                             and depth < MAX_DEPTH)
        for name in filenames:
            if name.endswith(TABLE_SUFFIXES) and not name.startswith((".", "_")) and name != "manifest.json":
                out.append(Path(dirpath) / name)
    return sorted(out)


def _in_split(rel: Path, split: str) -> bool:
    if split in rel.parts[:-1]:
        return True
    name = rel.name
    return any(name.startswith(split + sep) for sep in ("-", "_", "."))


def find_tables(path: Path | str, split: str | None = "train") -> list[Path]:
    """The table files holding the triplets of `split` (None: every split)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset folder or file")
    tables = _walk_tables(path)
    if split:
        chosen = [t for t in tables if _in_split(t.relative_to(path), split)]
        structured = any(_in_split(t.relative_to(path), s) for t in tables for s in SPLIT_NAMES)
        if chosen or structured:
            tables = chosen
    for suffix in TABLE_SUFFIXES:
        picked = [t for t in tables if t.name.endswith(suffix)]
        if picked:
            return picked
    return []


def iter_table(table: Path, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Raw rows of one table file, as stored (paths relative or absolute)."""
    name = table.name
    if name.endswith(".parquet"):
        pf = pq.ParquetFile(table)
        cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=2048, columns=cols):
            yield from batch.to_pylist()
    elif name.endswith(".jsonl"):
        with open(table, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    elif name.endswith(".json"):
        data = json.loads(table.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("data") or data.get("rows") or []
        yield from data
    elif name.endswith(".tar"):
        with tarfile.open(table) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".json"):
                    yield json.loads(tar.extractfile(member).read())
    else:
        raise ValueError(f"{table}: not a triplet table (expected one of {', '.join(TABLE_SUFFIXES)})")


def iter_rows(path: Path | str, split: str | None = "train") -> Iterator[tuple[dict[str, Any], Path]]:
    """(raw row, table file) for every triplet of `split`."""
    for table in find_tables(path, split):
        for row in iter_table(table):
            yield row, table


def _field(row: dict[str, Any], name: str, where: str = "row") -> Any:
    for alias in ALIASES[name]:
        if alias in row:
            return row[alias]
    raise MissingField(f"{where} has no {name!r} field (looked for {', '.join(ALIASES[name])}); keys: {sorted(row)}",
                       hint="give MegaPairs-format triplets (q_img, q_text, t_img, hns) or rename the columns")


def _path_value(v: Any) -> str:
    if isinstance(v, dict):  # a datasets Image() struct
        if v.get("path"):
            return v["path"]
        raise ValueError("image stored as embedded bytes without a path; export it to files first")
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected an image path, got {v!r}")
    return v


def _bases(table: Path, root: Path, image_root: Path | None) -> list[Path]:
    if image_root is not None:
        return [image_root]
    out = [root]
    p = table.parent
    stop = root.parent
    while True:
        if p not in out:
            out.append(p)
        if p == stop or p == p.parent or len(out) > 8:
            break
        p = p.parent
    return out


def dataset_root(path: Path) -> Path:
    """The folder relative image paths start from (before `_bases` walks up): the dataset folder, or
    for one table file its folder (the dataset folder for a file of jsonl/<split>/ or webdataset/<split>/)."""
    root = path if path.is_dir() else path.parent
    if root.parent.name in FORMAT_FOLDERS:
        root = root.parent.parent
    return root


def table_base(table: Path, root: Path, image_root: Path | None, first_q: str) -> Path:
    """The base a table's relative paths resolve against: the first candidate holding its first query."""
    candidates = _bases(table, root, image_root)
    return next((b for b in candidates if Path(first_q).is_absolute() or (b / first_q).exists()), candidates[0])


CONSUMED = {a for names in ALIASES.values() for a in names}


def _query_path(row: dict[str, Any], where: str) -> str:
    try:
        return _path_value(_field(row, "q_img", where))
    except ValueError as e:
        raise UserError(f"{where}: q_img: {e}") from None


def triplet_of(row: dict[str, Any], base: Path, where: str = "row") -> dict[str, Any]:
    """One raw row as a triplet with absolute image paths (plus its other non-image fields); errors
    name `where` (the table and row)."""

    def absolute(p: str) -> str:
        pp = Path(p)
        return str(pp if pp.is_absolute() else (base / pp).resolve())

    texts = _field(row, "q_text", where)
    if isinstance(texts, str):
        texts = [texts]
    try:
        hns = _field(row, "hns") or []
    except KeyError:
        hns = []
    out = {
        "q_img": absolute(_query_path(row, where)),
        "q_text": [str(t) for t in (texts or [])],
        "t_img": absolute(_path_value(_field(row, "t_img", where))),
        "hns": [absolute(_path_value(h)) for h in hns],
    }
    for k, v in row.items():
        if k not in CONSUMED and not isinstance(v, (bytes, bytearray)):
            out.setdefault(k, v)
    return out


def read_triplets(path: Path | str, split: str | None = "train", *,
                  image_root: Path | str | None = None) -> Iterator[dict[str, Any]]:
    """Triplets with absolute image paths (see the module docstring)."""
    path = Path(path).resolve()
    root = dataset_root(path)
    img_root = Path(image_root).resolve() if image_root is not None else None
    base_for: dict[Path, Path] = {}
    seen: dict[Path, int] = {}
    for row, table in iter_rows(path, split):
        seen[table] = seen.get(table, -1) + 1
        where = f"{table} row {seen[table]}"  # errors name the table and row
        if table not in base_for:
            base_for[table] = table_base(table, root, img_root, _query_path(row, where))
        yield triplet_of(row, base_for[table], where)
