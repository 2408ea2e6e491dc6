"""Checking an exported dataset against the MegaPairs field contract.

`validate_megapairs(folder)` returns a list of problems (empty = valid):

- every row has `q_img` (str), `q_text` (non-empty list of non-empty str), `t_img` (str, not the
  query) and `hns` (non-empty list of str, `hns[0] == q_img`, no repeats, not containing `t_img`);
- image paths are relative to the dataset folder (no absolute paths, no `..`) and the files exist;
- when provenance is present, `q_id`/`t_id`/`hn_ids` agree with the file names;
- every format (Parquet, JSONL, WebDataset) of a split holds the same triplets, and tar samples
  carry their images;
- no image appears in two splits (in any role), no triplet key twice;
- the split counts agree with manifest.json.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from megapairs.artifacts import manifest_file
from megapairs.export.layout import FORMAT_DIRS, SPLITS, split_dir
from megapairs.export.reader import find_tables, iter_table


class _Problems:
    def __init__(self, limit: int) -> None:
        self.items: list[str] = []
        self.limit = limit
        self.extra = 0

    def add(self, msg: str) -> None:
        if len(self.items) < self.limit:
            self.items.append(msg)
        else:
            self.extra += 1

    def result(self) -> list[str]:
        return self.items + ([f"... and {self.extra} more problems"] if self.extra else [])


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_row(row: dict[str, Any], where: str, problems: _Problems, *, relative: bool = True) -> None:
    """The field contract of one triplet row (paths as stored)."""
    q, t, texts, hns = row.get("q_img"), row.get("t_img"), row.get("q_text"), row.get("hns")
    if not isinstance(q, str) or not q:
        problems.add(f"{where}: q_img must be a non-empty string, got {q!r}")
    if not isinstance(t, str) or not t:
        problems.add(f"{where}: t_img must be a non-empty string, got {t!r}")
    elif t == q:
        problems.add(f"{where}: t_img is the query image")
    if not _is_str_list(texts) or not texts:
        problems.add(f"{where}: q_text must be a non-empty list of strings, got {texts!r}")
    elif any(not x.strip() for x in texts):
        problems.add(f"{where}: q_text has an empty instruction")
    if not _is_str_list(hns) or not hns:
        problems.add(f"{where}: hns must be a non-empty list of strings, got {hns!r}")
    else:
        if hns[0] != q:
            problems.add(f"{where}: hns[0] must be the query image {q!r}, got {hns[0]!r}")
        if t in hns:
            problems.add(f"{where}: the target image is among the hard negatives")
        if len(set(hns)) != len(hns):
            problems.add(f"{where}: hns repeats an image")
    if relative:
        for p in [q, t, *(hns if _is_str_list(hns) else [])]:
            if isinstance(p, str) and (p.startswith("/") or ".." in PurePosixPath(p).parts or "\\" in p):
                problems.add(f"{where}: image path {p!r} must be relative to the dataset folder, with '/'")
    ids = {"q_id": q, "t_id": t}
    for col, path in ids.items():
        if isinstance(row.get(col), str) and isinstance(path, str) and PurePosixPath(path).stem != row[col]:
            problems.add(f"{where}: {col} {row[col]!r} does not match its image path {path!r}")
    hn_ids = row.get("hn_ids")
    if _is_str_list(hn_ids) and _is_str_list(hns):
        if [PurePosixPath(p).stem for p in hns] != hn_ids:
            problems.add(f"{where}: hn_ids do not match hns")


def _row_images(row: dict[str, Any]) -> set[str]:
    out = {row.get("q_img"), row.get("t_img"), *(row.get("hns") or [])}
    return {x for x in out if isinstance(x, str)}


def _row_key(row: dict[str, Any]) -> str:
    return str(row.get("key") or f"{row.get('q_img')}|{row.get('t_img')}")


def _check_tar(table: Path, problems: _Problems) -> None:
    """Each sample has a .json and its q/t/hn images."""
    samples: dict[str, set[str]] = {}
    metas: dict[str, dict] = {}
    with tarfile.open(table) as tar:
        for m in tar:
            if not m.isfile():
                continue
            key, _, ext = PurePosixPath(m.name).name.partition(".")
            samples.setdefault(key, set()).add(ext)
            if ext == "json":
                metas[key] = json.loads(tar.extractfile(m).read())
    for key, exts in samples.items():
        if key not in metas:
            problems.add(f"{table.name}: sample {key} has no .json")
            continue
        kinds = {e.split(".")[0] for e in exts}
        need = {"q", "t", *(f"hn{j}" for j in range(1, len(metas[key].get("hns") or [])))}
        missing = need - kinds
        if missing:
            problems.add(f"{table.name}: sample {key} lacks image(s) {sorted(missing)}")


def validate_megapairs(folder: Path | str, *, check_files: bool = True, max_problems: int = 200) -> list[str]:
    """Problems found in an exported dataset folder (an empty list means it passes)."""
    folder = Path(folder)
    problems = _Problems(max_problems)
    if not folder.is_dir():
        return [f"{folder}: not a folder"]
    split_names = [s for s in SPLITS if any((folder / split_dir(s, x)).is_dir() for x in FORMAT_DIRS)]
    ours = bool(split_names)
    split_names = split_names if ours else [None]
    images_by_split: dict[str, set[str]] = {}
    keys: Counter = Counter()
    counts: dict[str, int] = {}
    exists: dict[str, bool] = {}
    total = 0
    for split in split_names:
        label = split or "all"
        by_format: dict[str, list[Path]] = {}
        for table in _all_tables(folder, split):
            by_format.setdefault(table.suffix, []).append(table)
        if not by_format:
            problems.add(f"{label}: no Parquet, JSONL or tar shards")
            continue
        format_keys: dict[str, list[str]] = {}
        for suffix, tables in sorted(by_format.items()):
            fkeys: list[str] = []
            for table in tables:
                if suffix == ".tar":
                    _check_tar(table, problems)
                for n, row in enumerate(iter_table(table)):
                    where = f"{table.relative_to(folder)}:{n}"
                    check_row(row, where, problems, relative=ours)
                    fkeys.append(_row_key(row))
                    if suffix != min(by_format):  # images and files: check one format only
                        continue
                    imgs = _row_images(row)
                    images_by_split.setdefault(label, set()).update(imgs)
                    if check_files:
                        for p in imgs:
                            if p not in exists:
                                exists[p] = (folder / p).is_file() if not Path(p).is_absolute() else Path(p).is_file()
                            if not exists[p]:
                                problems.add(f"{where}: image file {p!r} does not exist")
                                exists[p] = True  # report each missing file once
            format_keys[suffix] = fkeys
        first = format_keys[min(format_keys)]
        if any(sorted(k) != sorted(first) for k in format_keys.values()):
            sizes = ", ".join(f"{s}: {len(k)}" for s, k in sorted(format_keys.items()))
            problems.add(f"{label}: the formats hold different triplets ({sizes})")
        keys.update(first)
        counts[label] = len(first)
        total += len(first)
    if total == 0:
        problems.add("no triplets found")
    dup = [k for k, v in keys.items() if v > 1]
    if dup:
        problems.add(f"{len(dup)} triplet key(s) appear more than once, e.g. {dup[:3]}")
    labels = sorted(images_by_split)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            shared = images_by_split[a] & images_by_split[b]
            if shared:
                problems.add(f"split leakage: {len(shared)} image(s) in both {a} and {b}, e.g. {sorted(shared)[:3]}")
    manifest = manifest_file(folder)
    if ours and manifest.exists():
        splits = json.loads(manifest.read_text()).get("splits", {})
        for s, n in splits.items():
            if counts.get(s, 0) != n:
                problems.add(f"manifest.json says {s} has {n} triplets, the shards hold {counts.get(s, 0)}")
    return problems.result()


def _all_tables(folder: Path, split: str | None) -> list[Path]:
    """Every table file of one of our splits (all formats, to cross-check them: `<split>/`, and
    `jsonl/<split>/`, `webdataset/<split>/` or, in exports before 0.3, beside the Parquet shards); in
    any other layout, the tables `read_triplets` would read."""
    if split is None:
        return find_tables(folder, None)
    found: list[Path] = []
    for suffix in (".parquet", ".jsonl", ".tar"):
        for sub in {split, split_dir(split, suffix)}:
            base = folder / sub
            if base.is_dir():
                found += sorted(p for p in base.rglob(f"*{suffix}") if not p.name.startswith((".", "_")))
    return sorted(set(found), key=lambda p: (p.suffix, p))
