"""The export stage: corpus + pairs + annotations -> a MegaPairs-format triplet dataset.

plan     joins pairs with annotations, splits by connected components of images (split.py), orders
         each split, cuts it into shards and freezes all of that under `_plan/` (one Parquet row
         group per shard, plus which shard writes which image). A resumed run reuses the frozen plan.
         It works on columns (plan.py): memory-mapped Arrow copies of the inputs under
         `_plan/inputs/` (deleted once the plan is frozen) and integer arrays per triplet.
worker   writes one shard: its rows as Parquet / JSONL / WebDataset, and the images it owns (each
         image has exactly one owner shard, so concurrent workers never write the same file).
finalize aggregates counts into the manifest and writes the dataset card and the HTML preview.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from megapairs.artifacts import (Artifact, ArtifactError, atomic_write_bytes, atomic_write_json, open_complete,
                                 read_json, write_table)
from megapairs.corpus.images import load_image
from megapairs.errors import DamagedFile
from megapairs.export import layout
from megapairs.export.config import ExportConfig
from megapairs.export.columns import relpaths, take_rows
from megapairs.export.plan import BLOCK, ImagePlan, Plan, image_owners, make_plan, row_table
from megapairs.export.writers import triplet_schema, write_jsonl, write_webdataset
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

    def _make_plan(self) -> None:
        c = self.config
        ext = c.image_ext
        scratch = self.plan_dir / "inputs"
        plan = make_plan(self.input_artifact("corpus"), self.input_artifact("pairs"),
                         self.input_artifact("annotations"), c, scratch)
        schema = triplet_schema(plan.score_columns)
        tasks: list[dict[str, Any]] = []
        shard_of = np.full(len(plan.q), -1, dtype=np.int64)
        self.plan_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_dir / "triplets.parquet.tmp"
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for split_name, order in plan.order.items():
                # gather a block of shards at once (one take per column), then cut it into row groups
                block = max(1, BLOCK // c.shard_size) * c.shard_size
                for start in range(0, len(order), block):
                    table = row_table(plan, order[start:start + block], schema, ext)
                    for part_start in range(0, table.num_rows, c.shard_size):
                        chunk = table.slice(part_start, c.shard_size)
                        index = len(tasks)
                        shard_of[order[start + part_start:start + part_start + chunk.num_rows]] = index
                        writer.write_table(chunk, row_group_size=chunk.num_rows)
                        part = (start + part_start) // c.shard_size
                        tasks.append({"index": index, "split": split_name, "part": part, "rows": chunk.num_rows})
        tmp.replace(self.plan_dir / "triplets.parquet")
        codes, owners = image_owners(plan, shard_of)
        ids = plan.vocab.take(pa.array(codes))
        where = plan.corpus_pos[codes]
        images = pa.table({
            "id": ids, "path": relpaths(ids, ext), "owner": pa.array(owners.astype(np.int32)),
            "corpus_shard": take_rows(plan.corpus["_shard"], where),
            "corpus_row": take_rows(plan.corpus["_row"], where),
        }, schema=IMAGE_PLAN_SCHEMA)
        pq.write_table(images, self.plan_dir / "images.parquet")
        stats = plan_stats(plan, len(codes))
        atomic_write_json(self.plan_dir / "stats.json", stats)
        atomic_write_json(self.plan_dir / "schema.json", [f"{f.name}: {f.type}" for f in schema])
        atomic_write_json(self.plan_dir / "tasks.json", tasks)  # last: marks the plan complete
        shutil.rmtree(scratch, ignore_errors=True)
        log.info("dataset: %d train / %d validation triplets in %d shards, %d images",
                 stats["splits"]["train"], stats["splits"]["validation"], len(tasks), len(codes))

    # -- worker ---------------------------------------------------------------------------------
    def make_worker(self):
        c = self.config
        art = self.output()
        out = self.output_path
        plan_file = pq.ParquetFile(self.plan_dir / "triplets.parquet")
        images = ImagePlan(self.plan_dir / "images.parquet")
        corpus = self.input_artifact("corpus")

        def encode_missing(wanted: np.ndarray) -> dict[int, bytes]:
            """Encode images (positions in the image plan) not yet on disk, reading each corpus shard once."""
            out_bytes: dict[int, bytes] = {}
            for shard in np.unique(images.corpus_shard[wanted]).tolist():
                members = wanted[images.corpus_shard[wanted] == shard]
                members = members[np.argsort(images.corpus_row[members], kind="stable")]
                table = corpus.read_shard(shard, columns=["id", "uri", "image_bytes"])
                picked = table.take(pa.array(images.corpus_row[members].astype(np.int64))).to_pylist()
                for pos, row in zip(members.tolist(), picked):
                    image_id = images.id(pos)
                    if row["id"] != image_id:
                        raise ArtifactError(f"the corpus changed under the export plan (shard {shard} row "
                                            f"{images.corpus_row[pos]} is {row['id']}, expected {image_id}); "
                                           "rerun the export with --overwrite")
                    try:
                        out_bytes[pos] = layout.encode_image(load_image(row), c)
                    except Exception as e:  # noqa: BLE001 - any decode problem: name the image, fail the shard
                        raise DamagedFile(f"cannot read image {image_id} ({row['uri']}): {type(e).__name__}: {e}. "
                                           "It was usable at ingest; restore the file or exclude it and rerun.") from e
            return out_bytes

        def work(task: ShardTask) -> None:
            info = task.payload
            table = plan_file.read_row_group(info["index"])
            owned = images.owned(task.index)
            # Owned images are written here; other shards' images are encoded too (identically) when a
            # tar must carry their pixels and their owner has not written them yet.
            wanted = owned
            if "webdataset" in c.formats:
                used = pa.concat_arrays([table["q_id"].combine_chunks(), table["t_id"].combine_chunks(),
                                         pc.list_flatten(table["hn_ids"]).combine_chunks()])
                wanted = np.unique(images.positions(pc.unique(used).to_pylist()))
            fresh = encode_missing(np.asarray([p for p in wanted.tolist() if not (out / images.path(p)).exists()],
                                              dtype=np.int64))
            for pos in owned.tolist():
                if pos in fresh:
                    atomic_write_bytes(out / images.path(pos), fresh.pop(pos))
            fresh_by_id = {images.id(p): b for p, b in fresh.items()}

            def image_bytes(image_id: str) -> bytes:
                if image_id in fresh_by_id:
                    return fresh_by_id[image_id]
                return (out / layout.image_relpath(image_id, c.image_ext)).read_bytes()

            files = []
            if "parquet" in c.formats:
                rel = layout.shard_relpath(info["split"], info["part"], ".parquet")
                write_table(out / rel, table)
                files.append(rel)
            rows = table.to_pylist() if {"jsonl", "webdataset"} & set(c.formats) else []
            if "jsonl" in c.formats:
                rel = layout.shard_relpath(info["split"], info["part"], ".jsonl")
                write_jsonl(out / rel, rows)
                files.append(rel)
            if "webdataset" in c.formats:
                rel = layout.shard_relpath(info["split"], info["part"], ".tar")
                write_webdataset(out / rel, rows, image_bytes, c.image_ext)
                files.append(rel)
            art.mark_done(task.index, table.num_rows, files, split=info["split"], images_owned=len(owned))

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


def _hist(vals: np.ndarray, span: tuple[float, float] | None = None, bins: int = HIST_BINS) -> dict[str, list]:
    vals = vals[~np.isnan(vals)]
    if len(vals) == 0:
        return {"edges": [], "counts": []}
    lo, hi = span or (float(vals.min()), float(vals.max()))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.astype(int).tolist()}


def _summary(vals: np.ndarray) -> dict[str, float | int | None]:
    vals = vals[~np.isnan(vals)]
    if len(vals) == 0:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {"n": int(len(vals)), "min": round(float(vals.min()), 4),
            "median": round(float(np.median(vals)), 4), "max": round(float(vals.max()), 4)}


def _counts(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """`Counter(str(v))` of a column, sorted by key (None counts as "None", as str() writes it)."""
    out: Counter = Counter()
    for r in pc.value_counts(values).to_pylist():
        out["None" if r["values"] is None else str(r["values"])] += r["counts"]
    return dict(sorted(out.items()))


def _int_counts(values: np.ndarray) -> dict[str, int]:
    keys, counts = np.unique(values, return_counts=True)
    return dict(sorted((str(int(k)), int(v)) for k, v in zip(keys, counts)))


def plan_stats(plan: Plan, n_images: int) -> dict[str, Any]:
    """The plan's counts for the manifest and the card, from the columns of the written rows."""
    rows = np.concatenate([plan.order[s] for s in layout.SPLITS])
    prow, arow = plan.pair_row[rows], plan.ann_row[rows]
    sim = pc.round(take_rows(plan.pairs["best_score"], prow), 6).to_numpy(zero_copy_only=False).astype(np.float64)
    view = take_rows(plan.pairs["best_view"], prow)
    view_key = pc.if_else(pc.fill_null(pc.equal(view, ""), True), "?", view)  # `view or "?"`
    by_view = {v: sim[pc.equal(view_key, v).to_numpy(zero_copy_only=False)]
               for v in sorted(pc.unique(view_key).to_pylist())}
    scores = sim[~np.isnan(sim)]
    span = (float(scores.min()), float(scores.max())) if len(scores) else None
    joined = pc.binary_join(pc.fill_null(take_rows(plan.pairs["found_by"], prow), pa.scalar([], pa.list_(pa.string()))),
                            "\x1f")
    found_by: Counter = Counter()
    for k, v in _counts(joined).items():  # "+".join(sorted(found_by)) of each distinct list
        found_by["+".join(sorted(k.split("\x1f"))) if k else ""] += v
    ann = plan.annotations
    hn_len = plan.hn_offsets[rows + 1] - plan.hn_offsets[rows]
    split = plan.split

    def images(idx: np.ndarray) -> int:
        starts, lengths = plan.hn_offsets[idx], plan.hn_offsets[idx + 1] - plan.hn_offsets[idx]
        flat = plan.hn[np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))]
        return len(np.unique(np.concatenate([plan.q[idx], plan.t[idx], flat])))

    return {
        "pairs_in": plan.pairs.num_rows,
        "annotations_in": plan.annotations.num_rows,
        "triplets": len(rows),
        "splits": {s: len(o) for s, o in plan.order.items()},
        "queries": {s: len(np.unique(plan.q[o])) for s, o in plan.order.items()},
        "images": n_images,
        "images_per_split": {s: images(o) for s, o in plan.order.items()},
        "dropped": dict(sorted(plan.dropped.items())),
        "annotation_status": dict(sorted(plan.annotation_status.items())),
        "failure_examples": plan.failure_examples,
        "notes": dict(sorted(plan.notes.items())),
        "split_policy": {
            "kind": "image-connected-components" + ("+carve" if split.carved else ""),
            "components": split.components, "largest_component_triplets": split.largest_component,
            "carved": split.carved, "val_target": split.target_val,
        },
        "similarity_summary": {v: _summary(s) for v, s in [("all", sim), *by_view.items()]},
        "similarity_histograms": {"all": _hist(sim, span), **{v: _hist(s, span) for v, s in by_view.items()}},
        "instructions_per_triplet": _int_counts(plan.n_text[rows]),
        "hns_per_triplet": _int_counts(hn_len),
        "views": _counts(view),
        "found_by": dict(sorted(found_by.items())),
        "describers": _counts(take_rows(ann["describer"], arow)),
        "writers": _counts(take_rows(ann["writer"], arow)),
        "writers_used": _counts(take_rows(ann["writer_used"], arow)),
        "prompt_versions": _counts(take_rows(ann["prompt_version"], arow)),
    }
