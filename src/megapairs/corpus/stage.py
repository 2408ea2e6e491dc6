"""The ingest stage: items -> corpus artifact (one row per item, failures included).

Row columns: id (sha256 of the bytes, 32 hex), uri, source, label, caption, width, height,
format, mode, status, reason, note, image_bytes (PNG render for SVG sources, else null).
status is `ok` or why the item is unusable: empty_file, not_an_image, truncated,
decompression_bomb, unreadable, missing, bad_svg, excluded, duplicate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from megapairs.artifacts import Artifact, write_table
from megapairs.corpus.config import IngestConfig
from megapairs.corpus.images import DecodeError, decode, looks_like_svg, read_bytes, render_svg
from megapairs.corpus.sources import caption_from_json, list_source, resolve_source_name, spread
from megapairs.corpus.svgmeta import svg_caption
from megapairs.progress import advance
from megapairs.stages import ShardTask, Stage, sum_marker_counts

SCHEMA = pa.schema([
    ("id", pa.string()), ("uri", pa.string()), ("source", pa.string()), ("label", pa.string()),
    ("caption", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
    ("mode", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("note", pa.string()),
    ("image_bytes", pa.binary()),
])


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def load_exclusions(files: list[str]) -> tuple[set[str], set[str]]:
    """Lines of ids (32 hex) and paths from the exclusion files -> (ids, paths)."""
    ids, paths = set(), set()
    for f in files:
        for line in Path(f).expanduser().read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if len(line) == 32 and all(c in "0123456789abcdef" for c in line.lower()):
                ids.add(line.lower())
            else:
                paths.add(line)
                paths.add(str(Path(line).expanduser().resolve()))
    return ids, paths


def sidecar_caption(uri: str) -> str:
    p = Path(uri)
    txt, js = p.with_suffix(".txt"), p.with_suffix(".json")
    if txt.exists():
        return txt.read_text(errors="replace").strip()
    if js.exists():
        try:
            return caption_from_json(json.loads(js.read_text(errors="replace")))
        except json.JSONDecodeError:
            return ""
    return ""


class IngestStage(Stage):
    name = "corpus"
    cpu_parallel = True  # decoding and SVG rendering: no model, so a process pool helps
    kind = "corpus"
    config: IngestConfig

    def __init__(self, root, config: IngestConfig, **kw) -> None:
        super().__init__(root, config, **kw)

    def output(self) -> Artifact:
        # The source listing is part of the identity: a different folder is a different corpus.
        src = resolve_source_name(self.config.source)
        return Artifact(self.output_path, self.config.config_hash(("source", src)), {})

    def plan(self) -> list[ShardTask]:
        c = self.config
        items = spread(list_source(c.source, c.image_column, c.caption_column, self.root / "_samples"), c.limit)
        n = c.shard_size
        return [ShardTask(i // n, items[i : i + n], len(items[i : i + n])) for i in range(0, len(items), n)]

    def make_worker(self):
        ids, paths = load_exclusions(self.config.exclude)
        art = self.output()
        c = self.config

        def work(task: ShardTask) -> None:
            rows = []
            for item in task.payload:
                rows.append(self._row(item, ids, paths))
                advance(1)
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            write_table(art.shard_path(task.index), table)
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            art.mark_done(task.index, len(rows), [art.shard_path(task.index).name], status=counts)

        return work

    def _row(self, item: dict[str, Any], excluded_ids: set[str], excluded_paths: set[str]) -> dict:
        c = self.config
        row = {"id": None, "uri": item["uri"], "source": item["source"], "label": item.get("label"),
               "caption": item.get("caption"), "width": None, "height": None, "format": None,
               "mode": None, "status": "ok", "reason": None, "note": None, "image_bytes": None}
        if item.get("error") or not item["uri"]:
            row.update(status="unreadable", reason=item.get("error") or "no image path or bytes")
            row["id"] = content_id(item["source"].encode())
            return row
        try:
            data = read_bytes(item["uri"])
        except FileNotFoundError as e:
            row.update(id=content_id(item["uri"].encode()), status="missing", reason=str(e))
            return row
        except OSError as e:
            row.update(id=content_id(item["uri"].encode()), status="unreadable", reason=str(e))
            return row
        row["id"] = content_id(data)
        if row["id"] in excluded_ids or item["source"] in excluded_paths or item["uri"] in excluded_paths:
            row.update(status="excluded", reason="listed in ingest.exclude")
            return row
        if row["caption"] is None:
            row["caption"] = sidecar_caption(item["uri"]) if not item["uri"].startswith(("tar:", "parquet:")) else ""
        try:
            if looks_like_svg(data, item["uri"]):
                if not row["caption"]:
                    row["caption"] = svg_caption(data)
                png = render_svg(data, c.svg_render_size)
                dec = decode(png, "render.png", c.max_pixels)
                row.update(image_bytes=png, format="SVG", mode="vector", note="rendered to PNG")
            else:
                dec = decode(data, item["uri"], c.max_pixels)
                row.update(format=dec.format, mode=dec.mode, note=dec.note or None)
            row.update(width=dec.width, height=dec.height)
        except DecodeError as e:
            row.update(status=e.reason, reason=str(e))
        if row["status"] == "ok" and not row["caption"]:
            row["note"] = "; ".join(filter(None, [row["note"], "no caption"]))
        return row

    def finalize(self, artifact: Artifact, tasks: list[ShardTask]) -> dict[str, Any]:
        """Collapse exact duplicates across shards (first occurrence in plan order wins)."""
        first: dict[str, str] = {}
        for t in tasks:
            table = artifact.read_shard(t.index, columns=["id", "source", "status"])
            ids, sources, statuses = (table.column(c).to_pylist() for c in ("id", "source", "status"))
            changed = False
            new_status = list(statuses)
            for j, (i, s, st) in enumerate(zip(ids, sources, statuses)):
                if st != "ok":
                    continue
                if i in first:
                    new_status[j] = "duplicate"
                    changed = True
                else:
                    first[i] = s
            if changed:
                full = artifact.read_shard(t.index)
                reasons = full.column("reason").to_pylist()
                for j, st in enumerate(new_status):
                    if st == "duplicate" and statuses[j] == "ok":
                        reasons[j] = f"same bytes as {first[ids[j]]}"
                full = full.set_column(full.schema.get_field_index("status"), "status", pa.array(new_status))
                full = full.set_column(full.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))
                write_table(artifact.shard_path(t.index), full)
        counts: dict[str, int] = {}
        for t in tasks:
            st = artifact.read_shard(t.index, columns=["status"]).column("status")
            for k, v in zip(*pc.value_counts(st).flatten()):
                counts[k.as_py()] = counts.get(k.as_py(), 0) + v.as_py()
        return {"source": resolve_source_name(self.config.source), "status_counts": dict(sorted(counts.items())),
                "usable": counts.get("ok", 0), "status_counts_before_dedup": sum_marker_counts(artifact, tasks, "status")}
