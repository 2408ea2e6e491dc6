"""Source listing: turn a source spec into an ordered list of items (cheap: no image decoding).

An item is a small dict: `uri` (see corpus.images), `source` (what a person would recognise: the
path or tar member), `label` (the sub-folder, when there is one), and optionally `caption`.
Captions that need reading a sidecar file are resolved later, in the shard worker.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from megapairs.corpus.images import IMAGE_EXT
from megapairs.errors import UserError

OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")
SIDE_EXT = (".txt", ".json")
CAPTION_KEYS = ("caption", "text", "title", "alt", "description")

Item = dict[str, Any]


class SourceError(UserError, ValueError):
    """The source does not exist or is not in a format ingest reads."""


class NoImagesError(SourceError):
    """A WebDataset tar holds samples, none of them with an image."""


def caption_from_json(obj: Any) -> str:
    if isinstance(obj, dict):
        for k in CAPTION_KEYS:
            if isinstance(obj.get(k), str) and obj[k].strip():
                return obj[k].strip()
    return ""


def list_folder(root: Path) -> list[Item]:
    root = root.resolve()
    items: list[Item] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() not in IMAGE_EXT:
                continue
            rel = p.relative_to(root)
            items.append({"uri": str(p), "source": str(rel),
                          "label": str(rel.parent) if str(rel.parent) != "." else None})
    return items


def list_table(path: Path, image_column: str, caption_column: str) -> list[Item]:
    path = path.resolve()
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        rows = table.to_pylist() if table.num_rows < 50_000 else None
        if rows is None:
            rows = [dict(zip(table.column_names, r)) for r in zip(*(table.column(c).to_pylist() for c in table.column_names))]
    elif path.suffix == ".json" and (doc := _json_rows(path)) is not None:
        rows = doc
    else:
        rows = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        rows.append({"__error__": f"line {lineno}: {e}"})
    if rows and image_column not in rows[0] and "__error__" not in rows[0]:
        raise SourceError(f"{path}: no column {image_column!r} (columns: {sorted(rows[0])}); set ingest.image_column")
    items: list[Item] = []
    for i, row in enumerate(rows):
        caption = row.get(caption_column)
        value = row.get(image_column)
        if isinstance(value, dict):  # datasets Image() struct
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            uri = f"parquet:{path}:{i}#{image_column}"
            src = f"{path.name}[{i}]"
        elif isinstance(value, str) and value:
            p = Path(value)
            uri = str(p if p.is_absolute() else path.parent / p)
            src = value
        else:
            uri, src = "", f"{path.name}[{i}]"
        items.append({"uri": uri, "source": src, "label": None,
                      "caption": caption if isinstance(caption, str) else "",
                      **({"error": row["__error__"]} if "__error__" in row else {})})
    return items


def _json_rows(path: Path) -> list[dict[str, Any]] | None:
    """The rows of a .json document (a list, or {"data"|"rows": [...]}); None when the file is JSON Lines
    under a .json name (read line by line instead)."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        if "data" not in doc and "rows" not in doc:
            return None  # one JSON Lines record
        doc = doc.get("data", doc.get("rows"))
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise SourceError(f"{path}: expected a JSON list of objects (or {{\"data\": [...]}}) with "
                          "image and caption fields, or JSON Lines")
    return doc


def _read_tar_members(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Image members and side files of a tar, grouped by WebDataset key, in archive order."""
    groups: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    with tarfile.open(path) as tar:
        for m in tar:
            if not m.isfile():
                continue
            d, base = os.path.split(m.name)
            key, _, ext = base.partition(".")
            key = f"{d}/{key}" if d else key
            if key not in groups:
                groups[key] = {}
                order.append(key)
            ext = "." + ext.lower()
            if ext in SIDE_EXT:
                text = tar.extractfile(m).read().decode("utf-8", "replace")
                groups[key][ext] = text
            elif ext in IMAGE_EXT:
                groups[key]["image"] = (m.name, m.offset_data, m.size)
    return groups, order


def list_tar(path: Path) -> list[Item]:
    """WebDataset: members grouped by key (the path up to the first dot of the basename)."""
    path = path.resolve()
    try:
        groups, order = _read_tar_members(path)
    except (tarfile.TarError, EOFError) as e:
        lines = [ln.strip(" -") for ln in str(e).splitlines() if ln.strip(" -")]
        reason = lines[-1] if lines else type(e).__name__
        raise SourceError(f"{path}: not a readable tar archive ({reason}); "
                          "re-copy or re-create the shard, or leave it out of the source") from None
    items = []
    if order and not any("image" in g for g in groups.values()):
        raise _no_images([path], groups)
    for key in order:
        g = groups[key]
        if "image" not in g:
            continue
        name, off, size = g["image"]
        caption = g.get(".txt", "").strip()
        if not caption and ".json" in g:
            try:
                caption = caption_from_json(json.loads(g[".json"]))
            except json.JSONDecodeError:
                caption = ""
        items.append({"uri": f"tar:{path}:{off}:{size}#{name}", "source": f"{path.name}/{name}",
                      "label": None, "caption": caption})
    return items


def _no_images(tars: list[Path], groups: dict[str, dict[str, Any]]) -> NoImagesError:
    """A WebDataset source with samples but no image members: say what it holds instead."""
    found = sorted({ext for g in groups.values() for ext in g if ext != "image"})
    what = f"{tars[0]}" if len(tars) == 1 else f"{len(tars)} tar files in {tars[0].parent}"
    return NoImagesError(f"{what}: {len(groups)} WebDataset sample(s) and 0 usable items: no sample has an image "
                       f"member (found only {', '.join(found) or 'other files'})",
                       hint=f"each sample needs an image ({', '.join(sorted(IMAGE_EXT))}) beside its caption "
                       "(.txt or .json), with the same key")


def spread(items: list[Item], limit: int | None) -> list[Item]:
    """At most `limit` items taken evenly across the ordered list (so every category is sampled)."""
    if limit is None or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def list_source(source: str, image_column: str = "image", caption_column: str = "caption",
                samples_dir: Path | None = None) -> list[Item]:
    if source == "demo":
        source = "openclipart" if OPENCLIPART_DIR.is_dir() else "samples"
    if source == "icons" or source.startswith("icons:"):
        from megapairs.corpus.icons import IconSourceError, list_icons

        try:
            return list_icons(source)
        except IconSourceError as e:
            raise SourceError(str(e)) from e
    if source == "openclipart":
        if not OPENCLIPART_DIR.is_dir():
            raise SourceError(f"{OPENCLIPART_DIR} not found: install Debian's openclipart-svg "
                              "(apt-get install openclipart-svg) or use source=samples")
        return list_folder(OPENCLIPART_DIR)
    if source == "samples":
        from megapairs.corpus.samples import materialise_samples

        return list_folder(materialise_samples(samples_dir or Path.home() / ".cache/megapairs/samples"))
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source {source!r} does not exist")
    if path.is_dir():
        tars = sorted(path.glob("*.tar"))
        if tars and not any(p.suffix.lower() in IMAGE_EXT for p in path.iterdir()):
            items, samples = [], {}
            for t in tars:
                try:
                    items += list_tar(t)
                except NoImagesError:  # one imageless shard among others is skipped; all of them is an error
                    samples.update({f"{t.name}/{k}": g for k, g in _read_tar_members(t)[0].items()})
            if not items and samples:
                raise _no_images(tars, samples)
            return items
        return list_folder(path)
    if path.suffix in (".parquet", ".jsonl", ".json"):
        return list_table(path, image_column, caption_column)
    if path.suffix == ".tar":
        return list_tar(path)
    raise SourceError(f"source {source!r}: expected a folder, .parquet, .jsonl or .tar")


def resolve_source_name(source: str) -> str:
    if source == "demo":
        return "openclipart" if OPENCLIPART_DIR.is_dir() else "samples"
    return source


Sources = str | list[str] | dict[str, int | None]


def source_parts(source: Sources) -> list[tuple[str, int | None]]:
    """`ingest.source` as (spec, per-source limit) pairs, in the order written."""
    if isinstance(source, str):
        return [(source, None)]
    if isinstance(source, dict):
        return list(source.items())
    return [(s, None) for s in source]


def source_identity(source: Sources) -> str | list[list[Any]]:
    """What the manifest and the output hash record: one resolved name, or the ordered mix."""
    parts = source_parts(source)
    if isinstance(source, str):
        return resolve_source_name(source)
    return [[resolve_source_name(s), n] for s, n in parts]


def list_sources(source: Sources, limit: int | None, image_column: str = "image",
                 caption_column: str = "caption", samples_dir: Path | None = None) -> list[Item]:
    """Every source listed in order, each spread to its own limit, then the total to `limit`.
    Deterministic: the same installed files and config give the same items in the same order."""
    items: list[Item] = []
    for spec, n in source_parts(source):
        items += spread(list_source(spec, image_column, caption_column, samples_dir), n)
    return spread(items, limit)
