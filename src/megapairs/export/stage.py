"""The export stage: corpus + pairs + annotations -> a MegaPairs-format triplet dataset.

plan     joins pairs with annotations, splits by connected components of images (split.py), orders
         each split, cuts it into shards and freezes all of that under `_plan/` (one Parquet row
         group per shard, plus which shard writes which image). A resumed run reuses the frozen plan.
worker   writes one shard: its rows as Parquet / JSONL / WebDataset, and the images it owns (each
         image has exactly one owner shard, so concurrent workers never write the same file).
finalize aggregates counts into the manifest and writes the dataset card and the HTML preview.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from megapairs.artifacts import (Artifact, ArtifactError, atomic_write_bytes, atomic_write_json, open_complete,
                                 read_json)
from megapairs.corpus.images import load_image
from megapairs.errors import DamagedFile
from megapairs.export import layout
from megapairs.export.config import ExportConfig
from megapairs.export.split import DROPPED, VAL, assign_splits, confine_negatives, seeded_key
from megapairs.export.triplets import join_triplets
from megapairs.export.writers import triplet_schema, write_jsonl, write_parquet, write_webdataset
from megapairs.stages import ShardTask, Stage

log = logging.getLogger("megapairs")

IMAGE_PLAN_SCHEMA = pa.schema([
    ("id", pa.string()), ("path", pa.string()), ("owner", pa.int32()),
    ("corpus_shard", pa.int32()), ("corpus_row", pa.int32()),
])
HIST_BINS = 20


class ExportStage(Stage):
    name = "dataset"
    kind = "dataset"
    inputs = ("corpus", "pairs", "annotations")
    config: ExportConfig

    def __init__(self, root, config: ExportConfig, **kw) -> None:
        super().__init__(root, config, **kw)

    @property
    def plan_dir(self) -> Path:
        return self.output_path / layout.PLAN_DIR

    # -- plan -----------------------------------------------------------------------------------
    def plan(self) -> list[ShardTask]:
        tasks_file = self.plan_dir / "tasks.json"
        if not tasks_file.exists():
            self._make_plan()
        return [ShardTask(t["index"], t, t["rows"]) for t in read_json(tasks_file)]

    def _corpus_index(self) -> tuple[dict[str, str | None], dict[str, tuple[int, int]]]:
        """Usable corpus ids -> caption, and -> (shard, row) for reading pixels later."""
        art = self.input_artifact("corpus")
        captions: dict[str, str | None] = {}
        where: dict[str, tuple[int, int]] = {}
        for shard in art.shard_indices():
            t = art.read_shard(shard, columns=["id", "status", "caption"])
            for row, (i, st, cap) in enumerate(zip(*(t.column(c).to_pylist() for c in ("id", "status", "caption")))):
                if st == "ok" and i not in captions:
                    captions[i] = cap
                    where[i] = (shard, row)
        return captions, where

    def _make_plan(self) -> None:
        c = self.config
        captions, where = self._corpus_index()
        pairs = self.input_artifact("pairs").read_all()
        annotations = self.input_artifact("annotations").read_all()
        joined = join_triplets(pairs, annotations, captions, c)
        trip = joined.triplets
        # Queries and targets decide the split; hard negatives then follow it (see split.py).
        split = assign_splits([[t["q_id"], t["t_id"]] for t in trip], c.val_fraction, c.seed)
        removed_negatives = confine_negatives(trip, split.assignment, c.seed)
        dropped = Counter(joined.dropped)
        n_boundary = sum(1 for a in split.assignment if a == DROPPED)
        if n_boundary:
            dropped["split_boundary"] += n_boundary
        if removed_negatives:
            dropped["hard_negatives_removed_by_split"] += removed_negatives
        ext = c.image_ext
        by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in layout.SPLITS}
        for t, a in zip(trip, split.assignment):
            if a == DROPPED:
                continue
            key = f"{t['q_id']}_{t['t_id']}"
            row = {
                "q_img": layout.image_relpath(t["q_id"], ext), "q_text": t["q_text"],
                "t_img": layout.image_relpath(t["t_id"], ext),
                "hns": [layout.image_relpath(h, ext) for h in t["hn_ids"]], "key": key, **t,
            }
            by_split[layout.SPLITS[1] if a == VAL else layout.SPLITS[0]].append(row)
        for rows in by_split.values():
            if c.shuffle:
                rows.sort(key=lambda r: (seeded_key(c.seed, r["key"]), r["key"]))
            else:
                rows.sort(key=lambda r: (r["q_id"], r["pair_rank"] if r["pair_rank"] is not None else 0, r["t_id"]))

        schema = triplet_schema(joined.score_columns)
        tasks: list[dict[str, Any]] = []
        owner: dict[str, int] = {}
        self.plan_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_dir / "triplets.parquet.tmp"
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for split_name, rows in by_split.items():
                for part, start in enumerate(range(0, len(rows), c.shard_size)):
                    chunk = rows[start : start + c.shard_size]
                    index = len(tasks)
                    writer.write_table(pa.Table.from_pylist(chunk, schema=schema), row_group_size=len(chunk))
                    tasks.append({"index": index, "split": split_name, "part": part, "rows": len(chunk)})
                    for r in chunk:
                        for img in (r["q_id"], r["t_id"], *r["hn_ids"]):
                            owner.setdefault(img, index)
        tmp.replace(self.plan_dir / "triplets.parquet")
        images = pa.Table.from_pylist(
            [{"id": i, "path": layout.image_relpath(i, ext), "owner": o,
              "corpus_shard": where[i][0], "corpus_row": where[i][1]} for i, o in sorted(owner.items())],
            schema=IMAGE_PLAN_SCHEMA)
        pq.write_table(images, self.plan_dir / "images.parquet")
        stats = _plan_stats(by_split, joined, dropped, split, len(pairs), len(annotations), len(owner))
        atomic_write_json(self.plan_dir / "stats.json", stats)
        atomic_write_json(self.plan_dir / "schema.json", [f"{f.name}: {f.type}" for f in schema])
        atomic_write_json(self.plan_dir / "tasks.json", tasks)  # last: marks the plan complete
        log.info("dataset: %d train / %d validation triplets in %d shards, %d images",
                 len(by_split["train"]), len(by_split["validation"]), len(tasks), len(owner))

    # -- worker ---------------------------------------------------------------------------------
    def make_worker(self):
        c = self.config
        art = self.output()
        out = self.output_path
        plan_file = pq.ParquetFile(self.plan_dir / "triplets.parquet")
        schema = plan_file.schema_arrow
        img_plan = pq.read_table(self.plan_dir / "images.parquet").to_pylist()
        images = {r["id"]: r for r in img_plan}
        corpus = self.input_artifact("corpus")

        def encode_missing(ids: list[str]) -> dict[str, bytes]:
            """Encode images not yet on disk, reading each corpus shard once."""
            by_shard: dict[int, list[str]] = {}
            for i in ids:
                by_shard.setdefault(images[i]["corpus_shard"], []).append(i)
            out_bytes: dict[str, bytes] = {}
            for shard, members in sorted(by_shard.items()):
                members.sort(key=lambda i: images[i]["corpus_row"])
                table = corpus.read_shard(shard, columns=["id", "uri", "image_bytes"])
                picked = table.take(pa.array([images[i]["corpus_row"] for i in members], pa.int64())).to_pylist()
                for image_id, row in zip(members, picked):
                    if row["id"] != image_id:
                        raise ArtifactError(f"the corpus changed under the export plan (shard {shard} row "
                                           f"{images[image_id]['corpus_row']} is {row['id']}, expected {image_id}); "
                                           "rerun the export with --overwrite")
                    try:
                        out_bytes[image_id] = layout.encode_image(load_image(row), c)
                    except Exception as e:  # noqa: BLE001 - any decode problem: name the image, fail the shard
                        raise DamagedFile(f"cannot read image {image_id} ({row['uri']}): {type(e).__name__}: {e}. "
                                           "It was usable at ingest; restore the file or exclude it and rerun.") from e
            return out_bytes

        def work(task: ShardTask) -> None:
            info = task.payload
            rows = plan_file.read_row_group(info["index"]).to_pylist()
            needed = sorted({x for r in rows for x in (r["q_id"], r["t_id"], *r["hn_ids"])})
            owned = [i for i in needed if images[i]["owner"] == task.index]
            # Owned images are written here; other shards' images are encoded too (identically) when a
            # tar must carry their pixels and their owner has not written them yet.
            wanted = needed if "webdataset" in c.formats else owned
            fresh = encode_missing([i for i in wanted if not (out / images[i]["path"]).exists()])
            for image_id in owned:
                if image_id in fresh:
                    atomic_write_bytes(out / images[image_id]["path"], fresh.pop(image_id))

            def image_bytes(image_id: str) -> bytes:
                return fresh[image_id] if image_id in fresh else (out / images[image_id]["path"]).read_bytes()

            files = []
            if "parquet" in c.formats:
                rel = layout.shard_relpath(info["split"], info["part"], ".parquet")
                write_parquet(out / rel, rows, schema)
                files.append(rel)
            if "jsonl" in c.formats:
                rel = layout.shard_relpath(info["split"], info["part"], ".jsonl")
                write_jsonl(out / rel, rows)
                files.append(rel)
            if "webdataset" in c.formats:
                rel = layout.shard_relpath(info["split"], info["part"], ".tar")
                write_webdataset(out / rel, rows, image_bytes, c.image_ext)
                files.append(rel)
            art.mark_done(task.index, len(rows), files, split=info["split"], images_owned=len(owned))

        return work

    # -- finalize -------------------------------------------------------------------------------
    def finalize(self, artifact: Artifact, tasks: list[ShardTask]) -> dict[str, Any]:
        from megapairs.export.card import write_card
        from megapairs.export.preview import write_preview

        c = self.config
        stats = read_json(self.plan_dir / "stats.json")
        files = {s: sorted(f for t in tasks if t.payload["split"] == s for f in artifact.marker(t.index)["files"])
                 for s in layout.SPLITS}
        extra = {
            "format": "megapairs",
            "formats": list(c.formats),
            "image_size": c.image_size,
            "resize": c.resize if c.image_size else None,
            "image_format": c.image_format,
            "num_hard_negatives": c.num_hard_negatives,
            "files": {s: f for s, f in files.items() if f},
            **stats,
            "upstream_info": self._upstream_info(),
            "schema": read_json(self.plan_dir / "schema.json"),
            "config": c.to_dict(),
        }
        info = {"kind": self.kind, "config_hash": artifact.config_hash, "rows": stats["triplets"], **extra}
        write_card(self.output_path, info, samples=c.card_samples)
        write_preview(self.output_path, n=c.preview_count)
        return extra

    def _upstream_info(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.inputs:
            m = open_complete(self.root / name).manifest()
            keep = {k: m[k] for k in ("config_hash", "rows", "source", "usable", "status_counts", "views", "bands",
                                      "band_units", "histogram_bins", "score_histograms", "models",
                                      "prompt_version", "prompt_versions", "describer", "writer", "dropped")
                    if k in m}
            out[name] = keep
        return out


def _hist(values: list[float], span: tuple[float, float] | None = None, bins: int = HIST_BINS) -> dict[str, list]:
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(vals) == 0:
        return {"edges": [], "counts": []}
    lo, hi = span or (float(vals.min()), float(vals.max()))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.astype(int).tolist()}


def _summary(values: list[float]) -> dict[str, float | int | None]:
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(vals) == 0:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {"n": int(len(vals)), "min": round(float(vals.min()), 4),
            "median": round(float(np.median(vals)), 4), "max": round(float(vals.max()), 4)}


def _plan_stats(by_split, joined, dropped, split, n_pairs, n_annotations, n_images) -> dict[str, Any]:
    rows = [r for rs in by_split.values() for r in rs]
    images_per_split = {s: len({x for r in rs for x in (r["q_id"], r["t_id"], *r["hn_ids"])})
                        for s, rs in by_split.items()}
    by_view: dict[str, list[float]] = {}
    for r in rows:
        by_view.setdefault(r["view"] or "?", []).append(r["similarity"])
    scores = [r["similarity"] for r in rows if r["similarity"] is not None]
    span = (min(scores), max(scores)) if scores else None

    def counts(fn) -> dict[str, int]:
        return dict(sorted(Counter(str(fn(r)) for r in rows).items()))

    return {
        "pairs_in": n_pairs,
        "annotations_in": n_annotations,
        "triplets": len(rows),
        "splits": {s: len(rs) for s, rs in by_split.items()},
        "queries": {s: len({r["q_id"] for r in rs}) for s, rs in by_split.items()},
        "images": n_images,
        "images_per_split": images_per_split,
        "dropped": dict(sorted(dropped.items())),
        "annotation_status": dict(sorted(joined.annotation_status.items())),
        "failure_examples": joined.failure_examples,
        "notes": dict(sorted(joined.notes.items())),
        "split_policy": {
            "kind": "image-connected-components" + ("+carve" if split.carved else ""),
            "components": split.components, "largest_component_triplets": split.largest_component,
            "carved": split.carved, "val_target": split.target_val,
        },
        "similarity_summary": {v: _summary(s) for v, s in [("all", scores), *sorted(by_view.items())]},
        "similarity_histograms": {"all": _hist(scores, span),
                                  **{v: _hist(s, span) for v, s in sorted(by_view.items())}},
        "instructions_per_triplet": counts(lambda r: len(r["q_text"])),
        "hns_per_triplet": counts(lambda r: len(r["hns"])),
        "views": counts(lambda r: r["view"]),
        "found_by": counts(lambda r: "+".join(sorted(r["found_by"]))),
        "describers": counts(lambda r: r["describer"]),
        "writers": counts(lambda r: r["writer"]),
        "writers_used": counts(lambda r: r["writer_used"]),
        "prompt_versions": counts(lambda r: r["prompt_version"]),
    }

