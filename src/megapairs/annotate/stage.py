"""The annotations stage: pairs (+ corpus captions, labels, images) -> one annotation row per pair.

Shards are slices of the pairs shards (`shard_size` pairs each), so the plan only depends on the
pairs artifact and the config. A shard is written only when every pair in it has a row; a crash or a
dead server leaves the shard unmarked, and the rerun replays finished requests from the disk cache
(`<run>/_cache/annotate.sqlite` by default), so no finished generation is paid for twice.

Rows: the pairs columns (query_id, target_id, found_by, best_view, best_score, hard_negatives) plus
the annotation fields of `annotator.ROW_FIELDS`.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from megapairs.annotate.annotator import Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.quality import QualityTally, check_totals, summary_line
from megapairs.annotate.roles import PairItem
from megapairs.artifacts import Artifact, write_table
from megapairs.stages import ShardTask, Stage, sum_marker_counts

log = logging.getLogger("megapairs")

PAIR_COLUMNS = ("query_id", "target_id", "found_by", "best_view", "best_score", "hard_negatives")
SCHEMA = pa.schema([
    ("query_id", pa.string()), ("target_id", pa.string()), ("found_by", pa.list_(pa.string())),
    ("best_view", pa.string()), ("best_score", pa.float32()), ("hard_negatives", pa.list_(pa.string())),
    ("instructions", pa.list_(pa.string())), ("description", pa.string()), ("word_limit", pa.int32()),
    ("status", pa.string()), ("fallback", pa.bool_()), ("reason", pa.string()), ("describer", pa.string()),
    ("writer", pa.string()), ("describer_used", pa.string()), ("writer_used", pa.string()),
    ("writer_attempts", pa.int32()), ("demo_ids", pa.list_(pa.string())), ("rejected", pa.list_(pa.string())),
    ("raw_output", pa.string()), ("prompt_version", pa.string()),
    ("instruction_writers", pa.list_(pa.string())), ("template_filled", pa.int32()),
])


def default_cache_path(root: Path, config: AnnotateConfig) -> Path:
    return Path(config.cache_path) if config.cache_path else Path(root) / "_cache" / "annotate.sqlite"


def to_png(image: Image.Image, max_side: int) -> bytes:
    img = image.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _load_image(row: dict[str, Any]) -> Image.Image:
    try:
        from megapairs.corpus.images import load_image
    except ImportError:  # the corpus package decodes every source kind; this covers stored bytes only
        if row.get("image_bytes") is None:
            return Image.open(row["uri"])
        return Image.open(io.BytesIO(row["image_bytes"]))
    return load_image(row)


class CorpusLookup:
    """Captions and labels of every corpus id (read once per worker); images on demand per shard."""

    def __init__(self, corpus: Artifact) -> None:
        self.corpus = corpus
        self.where: dict[str, tuple[int, int]] = {}
        self.text: dict[str, tuple[str, str]] = {}
        self.uri: dict[str, str] = {}
        for s in corpus.shard_indices():
            t = corpus.read_shard(s, ["id", "caption", "label", "uri"]).to_pydict()
            for r, (i, cap, lab, uri) in enumerate(zip(t["id"], t["caption"], t["label"], t["uri"])):
                self.where[i] = (s, r)
                self.text[i] = (cap or "", lab or "")
                self.uri[i] = uri or ""

    def images(self, ids: set[str], max_side: int) -> dict[str, bytes]:
        by_shard: dict[int, list[tuple[str, int]]] = {}
        for i in ids:
            if i in self.where:
                s, r = self.where[i]
                by_shard.setdefault(s, []).append((i, r))
        out: dict[str, bytes] = {}
        cols = ["id", "uri", "caption", "label", "status", "image_bytes"]
        for s, wanted in by_shard.items():
            table = self.corpus.read_shard(s, cols).take(pa.array([r for _, r in wanted]))
            for row in table.to_pylist():
                try:
                    out[row["id"]] = to_png(_load_image(row), max_side)
                except Exception:  # noqa: BLE001 - an unreadable image becomes a describer fallback
                    continue
        return out

    def items(self, pairs: list[dict[str, Any]], with_images: bool, max_side: int) -> list[PairItem]:
        imgs = self.images({p[k] for p in pairs for k in ("query_id", "target_id")}, max_side) if with_images else {}
        out = []
        for p in pairs:
            q, t = p["query_id"], p["target_id"]
            (qc, ql), (tc, tl) = self.text.get(q, ("", "")), self.text.get(t, ("", ""))
            out.append(PairItem(q, t, qc, ql, tc, tl, imgs.get(q), imgs.get(t), self.uri.get(q, ""),
                                self.uri.get(t, "")))
        return out


class _Worker:
    """Holds the annotator (and any llama.cpp server it started) for the life of the worker."""

    def __init__(self, stage: "AnnotateStage") -> None:
        c = stage.config
        self.stage = stage
        self.annotator = Annotator(c, cache_path=default_cache_path(stage.root, c))
        self.pairs = stage.input_artifact("pairs")
        self.corpus = CorpusLookup(stage.input_artifact("corpus"))
        self.out = stage.output()
        self.quality = QualityTally()

    def __call__(self, task: ShardTask) -> None:
        c = self.stage.config
        s, start, stop = task.payload
        table = self.pairs.read_shard(s, list(PAIR_COLUMNS)).slice(start, stop - start)
        pairs = table.to_pylist()
        items = self.corpus.items(pairs, self.annotator.needs_images, self.annotator.image_side)
        before = self.annotator.stats.as_dict()
        rows = self.annotator.annotate_sync(items, desc=f"annotations shard {task.index}")
        usage = {k: v - before[k] for k, v in self.annotator.stats.as_dict().items()}
        merged = [{**p, **r} for p, r in zip(pairs, rows)]
        path = self.out.shard_path(task.index)
        write_table(path, pa.Table.from_pylist(merged, schema=SCHEMA))
        self.quality.add(rows)
        self.out.mark_done(task.index, len(merged), [path.name],
                           status=dict(Counter(r["status"] for r in rows)),
                           writer_used=dict(Counter(r["writer_used"] or "none" for r in rows)),
                           describer_used=dict(Counter(r["describer_used"] or "none" for r in rows)),
                           instructions_by_writer=dict(Counter(w for r in rows for w in r["instruction_writers"])),
                           fallback={"rows": sum(bool(r["fallback"]) for r in rows)}, usage=usage)
        self.quality.check(c)  # after the shard is saved: stopping here loses nothing

    def close(self) -> None:
        self.annotator.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class AnnotateStage(Stage):
    name = "annotations"
    kind = "annotations"
    inputs = ("pairs", "corpus")
    config: AnnotateConfig

    def plan(self) -> list[ShardTask]:
        pairs = self.input_artifact("pairs")
        size = self.config.shard_size
        tasks: list[ShardTask] = []
        for s in pairs.shard_indices():
            n = pq.read_metadata(pairs.shard_path(s)).num_rows
            for start in range(0, n, size):
                stop = min(n, start + size)
                tasks.append(ShardTask(len(tasks), (s, start, stop), stop - start))
        return tasks

    def make_worker(self) -> _Worker:
        return _Worker(self)

    def finalize(self, artifact: Artifact, tasks: list[ShardTask]) -> dict[str, Any]:
        from megapairs.annotate.prompts import PromptSet

        c = self.config
        prompts = PromptSet(c.prompt_version, c.demo_pool, c.line_demo_pool)
        status = sum_marker_counts(artifact, tasks, "status")
        fallback_rows = sum_marker_counts(artifact, tasks, "fallback").get("rows", 0)
        quality = check_totals(c, status, fallback_rows)  # raises past the configured shares
        log.info("%s", summary_line(quality))
        return {"annotate": {
            "describer": c.describer, "writer": c.writer,
            "describer_fallbacks": c.describer_fallbacks, "writer_fallbacks": c.writer_fallbacks,
            "prompt_version": c.prompt_version, "prompt_fingerprint": prompts.fingerprint,
            "status": status, "fallback_rows": fallback_rows, "quality": quality,
            "writer_used": sum_marker_counts(artifact, tasks, "writer_used"),
            "describer_used": sum_marker_counts(artifact, tasks, "describer_used"),
            "instructions_by_writer": sum_marker_counts(artifact, tasks, "instructions_by_writer"),
            "usage": sum_marker_counts(artifact, tasks, "usage"),
        }}
