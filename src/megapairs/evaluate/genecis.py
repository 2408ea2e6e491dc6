"""GeneCIS (facebookresearch/genecis): four tasks, each query ranks its own small gallery.

Folder layout::

    <data>/genecis/{focus_attribute,change_attribute,focus_object,change_object}.json  (or <data>/*.json)
    <data>/VG_100K/<image_id>.jpg   (VisualGenome 1.2; VG_100K_2/ and VG_100K_all/ are searched too)
    <data>/val2017/<val_image_id:012d>.jpg   (COCO 2017 val; or <data>/coco/val2017/)

Each JSON row: {"reference", "target", "condition", "gallery": [...]}. Attribute tasks name images
by `image_id` + `instance_bbox` (cropped, dilated 0.7 and padded to square as the official loader
does); object tasks by `val_image_id`. As in the official loader the candidates are [target] +
gallery (target at index 0), and rows whose gallery length differs from the most common length
are dropped. Metric: R@1/2/3 per task; headline = mean R@1. Because the target is listed first, the
official code's sort gives it every tie (a constant-score model scores 100 %). The headline is that
official number (a warning says when ties touched it); `pessimistic/...` beside it counts a tie
against the target. The number of queries with a tie is in `details[task]["tied_rankings"]`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import logging

import numpy as np

from megapairs.configbase import ConfigError
from megapairs.evaluate import metrics, templates
from megapairs.evaluate.common import (BenchmarkOutput, Crop, DataError, EvalOptions, Item, check_keys,
                                       first_existing, limited, read_json)
from megapairs.evaluate.context import Context

NAME = "genecis"
TASKS = ("focus_attribute", "change_attribute", "focus_object", "change_object")
KS = (1, 2, 3)
TIE_NOTE = ("headline: the official sort (target listed first, so ties go to it); pessimistic/*: a tied "
            "distractor ranks above the target")
log = logging.getLogger("megapairs")


def load_task(data_dir: Path, task: str) -> list[dict]:
    if task not in TASKS:
        raise DataError(f"GeneCIS tasks are {TASKS}, not {task!r}")
    path = first_existing([Path(data_dir) / "genecis" / f"{task}.json", Path(data_dir) / f"{task}.json"],
                          f"GeneCIS {task} templates")
    rows = read_json(path, f"GeneCIS {task} templates")
    check_keys(rows, ("reference", "target", "condition", "gallery"), path)
    return rows


def modal_gallery(rows: list[dict]) -> list[dict]:
    """Keep rows whose gallery has the most common length (the official loaders do the same)."""
    if not rows:
        return rows
    counts = Counter(len(r["gallery"]) for r in rows)
    top = max(counts.values())
    modal = min(n for n, c in counts.items() if c == top)  # np.unique + argmax picks the smallest
    return [r for r in rows if len(r["gallery"]) == modal]


class ImageFinder:
    """Resolves GeneCIS image references to files (and crops)."""

    def __init__(self, data_dir: Path, image_dir: str | None) -> None:
        base = Path(image_dir) if image_dir else Path(data_dir)
        self.vg_dirs = [base / d for d in ("VG_100K", "VG_100K_2", "VG_100K_all")] + \
                       [base / "visual_genome" / d for d in ("VG_100K", "VG_100K_2")] + [base]
        self.coco_dirs = [base / "val2017", base / "coco" / "val2017", base]

    def item(self, ref: dict, key_prefix: str = "") -> Item:
        if "val_image_id" in ref:
            name = f"{int(ref['val_image_id']):012d}.jpg"
            path = first_existing([d / name for d in self.coco_dirs], "GeneCIS COCO val2017 image")
            return Item(f"coco:{int(ref['val_image_id'])}", image=path)
        if "image_id" in ref and "instance_bbox" in ref:
            name = f"{ref['image_id']}.jpg"
            path = first_existing([d / name for d in self.vg_dirs], "GeneCIS VisualGenome image")
            x, y, w, h = (float(v) for v in ref["instance_bbox"])
            return Item(f"vg:{ref['image_id']}:{x},{y},{w},{h}", image=path, crop=Crop(x, y, w, h))
        raise DataError(f"GeneCIS image reference {ref!r} has neither val_image_id nor image_id + instance_bbox")


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    tname, template = templates.resolve(NAME, opts.template)
    if opts.reference_policy in ("remove", "min"):
        raise ConfigError("GeneCIS galleries never contain the reference image; use --reference-policy keep")
    finder = ImageFinder(Path(data_dir), opts.image_dir)
    data = {t: load_task(data_dir, t) for t in opts.tasks}  # check every file first
    per_task: dict[str, dict[str, float]] = {}  # ties to the target, as the official code sorts
    pessimistic: dict[str, dict[str, float]] = {}
    details: dict[str, dict] = {}
    n_queries, n_images = 0, 0
    for task, all_rows in data.items():
        if not all_rows:  # the official loader's np.argmax over no gallery lengths fails
            raise DataError(f"GeneCIS {task}: the template file has no rows")
        rows = limited(modal_gallery(all_rows), opts)
        cands = [[finder.item(r["target"])] + [finder.item(x) for x in r["gallery"]] for r in rows]
        unique: dict[str, Item] = {}
        for row in cands:
            for it in row:
                unique.setdefault(it.key, it)
        keys = sorted(unique)
        pos = {k: i for i, k in enumerate(keys)}
        g = ctx.gallery([unique[k] for k in keys], f"genecis-{task}")  # (M, D) distinct images/crops
        q_items = []
        for i, r in enumerate(rows):
            ref = finder.item(r["reference"])
            text = templates.fill(template, task=task, condition=r["condition"])
            q_items.append(Item(str(i), image=ref.image, crop=ref.crop, text=text))
        q = ctx.encode(q_items, f"genecis {task} queries")  # (Q, D)
        scores = [g[[pos[it.key] for it in row]] @ q[i] for i, row in enumerate(cands)]  # (1 + gallery,) each
        keys = [[it.key for it in row] for row in cands]  # the target listed again is not a rival
        per_task[task] = metrics.local_recall(scores, 0, KS, ties="official")
        pessimistic[task] = metrics.local_recall(scores, 0, KS, ties="pessimistic", keys=keys)
        n_tied = metrics.tied_rankings(scores, 0, keys)
        if n_tied:
            log.warning("GeneCIS %s: %d of %d queries tie the target with a distractor; as in the official code "
                        "the target (listed first) wins those ties (pessimistic/%s/R@1 = %.2f counts them as misses)",
                        task, n_tied, len(rows), task, pessimistic[task]["R@1"])
        details[task] = {"queries": len(rows), "tied_rankings": n_tied,
                         "dropped_off_modal_gallery": len(all_rows) - len(modal_gallery(all_rows)),
                         "gallery_per_query": int(np.mean([len(c) for c in cands])) if cands else 0}
        n_queries, n_images = n_queries + len(rows), n_images + len(keys)
    scores_out = {**metrics.genecis_summary(per_task),
                  **{f"pessimistic/{k}": v for k, v in metrics.genecis_summary(pessimistic).items()}}
    details["tie_policy"] = TIE_NOTE
    return BenchmarkOutput(metrics=scores_out, num_queries=n_queries,
                           gallery_size=f"{n_images} distinct images/crops (per-query galleries)",
                           details=details, split="test", template=templates.describe(tname, template),
                           reference_policy="keep")
