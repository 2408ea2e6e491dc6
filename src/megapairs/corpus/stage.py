"""The ingest stage: items -> corpus artifact (one row per item, failures included).

Row columns: id (sha256 of the bytes, 32 hex), uri, source, label, caption, width, height,
format, mode, status, reason, note, image_bytes (PNG render for SVG sources, else null), meta
(a JSON object of structured fields, see corpus/meta.py, or null).
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
from megapairs.corpus.exclude import Exclusions, file_digest, load_exclusions
from megapairs.corpus.sources import caption_from_json, list_sources, source_identity
from megapairs.corpus.svgmeta import caption_from_metadata, svg_metadata
from megapairs.stages import ShardTask, Stage, sum_marker_counts

SCHEMA = pa.schema([
    ("id", pa.string()), ("uri", pa.string()), ("source", pa.string()), ("label", pa.string()),
    ("caption", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
    ("mode", pa.string()), ("status", pa.string()), ("reason", pa.string()), ("note", pa.string()),
    ("image_bytes", pa.binary()), ("meta", pa.string()),
])


SAME_AS_EXCLUDED = "same bytes as excluded"


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


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
        # So are the exclusion lists' contents: an edited list is a different corpus.
        # (A single source hashes as it always did, so existing runs stay valid.)
        extra: list[Any] = [("source", source_identity(self.config.source))]
        if self.config.exclude:
            extra.append(f"exclude:{file_digest(self.config.exclude)}")
        return Artifact(self.output_path, self.config.config_hash(*extra), {})

    def plan(self) -> list[ShardTask]:
        c = self.config
        load_exclusions(c.exclude)  # an unreadable list stops here, before any shard is written
        items = list_sources(c.source, c.limit, c.image_column, c.caption_column, self.root / "_samples")
        n = c.shard_size
        return [ShardTask(i // n, items[i : i + n], len(items[i : i + n])) for i in range(0, len(items), n)]

    def make_worker(self):
        ex = load_exclusions(self.config.exclude)
        art = self.output()

        def work(task: ShardTask) -> None:
            hits: list[tuple[str, int]] = []
            rows = [self._row(item, ex, hits) for item in task.payload]
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            write_table(art.shard_path(task.index), table)
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            by_kind: dict[str, int] = {}
            by_file: dict[str, int] = {}
            for kind, i in hits:
                by_kind[kind] = by_kind.get(kind, 0) + 1
                by_file[ex.entries[i].file] = by_file.get(ex.entries[i].file, 0) + 1
            art.mark_done(task.index, len(rows), [art.shard_path(task.index).name], status=counts,
                          excluded_by_kind=by_kind, excluded_by_file=by_file,
                          excluded_entries=sorted({i for _, i in hits}))

        return work

    def _row(self, item: dict[str, Any], ex: Exclusions, hits: list[tuple[str, int]]) -> dict:
        c = self.config
        meta = dict(item["meta"]) if item.get("meta") else None
        row = {"id": None, "uri": item["uri"], "source": item["source"], "label": item.get("label"),
               "caption": item.get("caption"), "width": None, "height": None, "format": None,
               "mode": None, "status": "ok", "reason": None, "note": None, "image_bytes": None,
               "meta": json.dumps(meta, sort_keys=True) if meta else None}
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
        hit = ex.match_bytes(data, row["id"]) or ex.match_path(item["source"], item["uri"])
        if hit:
            hits.append(hit)
            row.update(status="excluded", reason=ex.reason(*hit))
            return row
        if row["caption"] is None:
            row["caption"] = sidecar_caption(item["uri"]) if not item["uri"].startswith(("tar:", "parquet:")) else ""
        try:
            if looks_like_svg(data, item["uri"]):
                if meta is None:
                    meta = svg_metadata(data) or None
                    row["meta"] = json.dumps(meta, sort_keys=True) if meta else None
                if not row["caption"]:
                    row["caption"] = caption_from_metadata(meta or {})
                png = render_svg(data, c.svg_render_size)
                hit = ex.match_bytes(png, content_id(png)) if ex else None  # hashes of PNG renders
                if hit:
                    hits.append(hit)
                    row.update(status="excluded", reason=ex.reason(*hit, via=" of the PNG render"))
                    return row
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
        """Collapse exact duplicates across shards (first occurrence in plan order wins), and keep out
        every copy of an excluded image: a listed file's bytes stored under another name go too."""
        excluded: dict[str, str] = {}
        for t in tasks:
            table = artifact.read_shard(t.index, columns=["id", "source", "status"])
            for i, s, st in zip(*(table.column(c).to_pylist() for c in ("id", "source", "status"))):
                if st == "excluded" and i is not None:
                    excluded.setdefault(i, s)
        first: dict[str, str] = {}
        for t in tasks:
            table = artifact.read_shard(t.index, columns=["id", "source", "status"])
            ids, sources, statuses = (table.column(c).to_pylist() for c in ("id", "source", "status"))
            new_status = list(statuses)
            for j, (i, s, st) in enumerate(zip(ids, sources, statuses)):
                if st != "ok":
                    continue
                if i in excluded:
                    new_status[j] = "excluded"
                elif i in first:
                    new_status[j] = "duplicate"
                else:
                    first[i] = s
            if new_status != statuses:
                full = artifact.read_shard(t.index)
                reasons = full.column("reason").to_pylist()
                for j, st in enumerate(new_status):
                    if st == "duplicate" and statuses[j] == "ok":
                        reasons[j] = f"same bytes as {first[ids[j]]}"
                    elif st == "excluded" and statuses[j] == "ok":
                        reasons[j] = f"{SAME_AS_EXCLUDED} {excluded[ids[j]]}"
                full = full.set_column(full.schema.get_field_index("status"), "status", pa.array(new_status))
                full = full.set_column(full.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string()))
                write_table(artifact.shard_path(t.index), full)
        counts: dict[str, int] = {}
        same_bytes = 0
        for t in tasks:
            table = artifact.read_shard(t.index, columns=["status", "reason"])
            for k, v in zip(*pc.value_counts(table.column("status")).flatten()):
                counts[k.as_py()] = counts.get(k.as_py(), 0) + v.as_py()
            same_bytes += sum(1 for r in table.column("reason").to_pylist() if r and r.startswith(SAME_AS_EXCLUDED))
        return {"source": source_identity(self.config.source), "status_counts": dict(sorted(counts.items())),
                "usable": counts.get("ok", 0), "status_counts_before_dedup": sum_marker_counts(artifact, tasks, "status"),
                **({"exclude": self._exclusion_stats(artifact, tasks, same_bytes)} if self.config.exclude else {})}

    def _exclusion_stats(self, artifact: Artifact, tasks: list[ShardTask], same_bytes: int) -> dict[str, Any]:
        """Items excluded per rule kind and per list file, and the entries that matched nothing (a list
        written in a form that matches nothing shows up here instead of passing silently)."""
        ex = load_exclusions(self.config.exclude)
        by_kind = sum_marker_counts(artifact, tasks, "excluded_by_kind")
        if same_bytes:
            by_kind["same_bytes_as_excluded"] = same_bytes
        by_file = sum_marker_counts(artifact, tasks, "excluded_by_file")
        matched: set[int] = set()
        for t in tasks:
            matched.update(artifact.marker(t.index).get("excluded_entries", []))
        files = {}
        for f in ex.files:
            idx = [i for i, e in enumerate(ex.entries) if e.file == f]
            files[f] = {"entries": len(idx), "entries_matched": sum(i in matched for i in idx),
                        "excluded": by_file.get(f, 0)}
        return {"excluded": sum(by_kind.values()), "by_kind": by_kind, "by_file": files}
