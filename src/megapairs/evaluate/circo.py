"""CIRCO (miccunifi/CIRCO): composed queries against the 123,403 COCO-2017 unlabeled images.

Folder layout (as the official repository and MagicLens `data/README.md` describe it)::

    <data>/annotations/{val,test}.json
    <data>/COCO2017_unlabeled/annotations/image_info_unlabeled2017.json
    <data>/COCO2017_unlabeled/unlabeled2017/<file_name from image_info>

val: mAP@{5,10,25,50} over `gt_img_ids`, Recall@k on `target_img_id`, and mAP@10 per semantic aspect
(the official script's nine aspects, in its order; an aspect no query carries is NaN, as there).
test: no ground truth; writes the server submission {query_id: [top-50 image ids]}.
Default reference policy: keep (BGE-VL and SEARLE leave the reference image in the ranking).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from megapairs.evaluate import metrics, templates
from megapairs.evaluate.common import (BenchmarkOutput, DataError, EvalOptions, Item, check_keys, limited,
                                       policy_or, read_json)
from megapairs.evaluate.context import Context
from megapairs.evaluate.submission import circo_submission

NAME = "circo"
SPLITS = ("val", "test")
DEFAULT_SPLIT = "val"
DEFAULT_POLICY = "keep"
KS = (5, 10, 25, 50)
QUERY_FIELDS = ("id", "reference_img_id", "relative_caption", "shared_concept")
# `semantic_aspects_list` of miccunifi/CIRCO `src/evaluation.py::compute_metrics`: only these are reported
SEMANTIC_ASPECTS = ("cardinality", "addition", "negation", "direct_addressing", "compare_change",
                    "comparative_statement", "statement_with_conjunction", "spatial_relations_background",
                    "viewpoint")
log = logging.getLogger("megapairs")


def load_queries(data_dir: Path, split: str) -> list[dict]:
    path = Path(data_dir) / "annotations" / f"{split}.json"
    rows = read_json(path, f"CIRCO {split} annotations")
    fields = QUERY_FIELDS + (("target_img_id", "gt_img_ids") if split == "val" else ())
    check_keys(rows, fields, path)
    return rows


def load_gallery(data_dir: Path, image_dir: str | None = None) -> tuple[list[int], list[Path]]:
    """Image ids and paths of the COCO unlabeled set, in image_info order."""
    root = Path(data_dir) / "COCO2017_unlabeled"
    info_path = root / "annotations" / "image_info_unlabeled2017.json"
    info = read_json(info_path, "COCO 2017 unlabeled image info")
    if "images" not in info:
        raise DataError(f"{info_path}: no 'images' list; is this image_info_unlabeled2017.json?")
    folder = Path(image_dir) if image_dir else root / "unlabeled2017"
    ids = [int(im["id"]) for im in info["images"]]
    paths = [folder / im["file_name"] for im in info["images"]]
    if paths and not paths[0].exists():
        raise DataError(f"missing CIRCO gallery image: {paths[0]} (unzip unlabeled2017.zip there)")
    return ids, paths


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    split = opts.split or DEFAULT_SPLIT
    if split not in SPLITS:
        raise DataError(f"CIRCO has splits {SPLITS}, not {split!r}")
    policy = policy_or(DEFAULT_POLICY, opts)
    tname, template = templates.resolve(NAME, opts.template)
    all_rows = load_queries(data_dir, split)
    queries = limited(all_rows, opts)
    ids, paths = load_gallery(data_dir, opts.image_dir)
    pos = {gid: i for i, gid in enumerate(ids)}
    missing = [q["reference_img_id"] for q in queries if int(q["reference_img_id"]) not in pos]
    if missing:
        raise DataError(f"CIRCO reference image ids {missing[:5]} are not in image_info_unlabeled2017.json")

    g = ctx.gallery([Item(str(i), image=p) for i, p in zip(ids, paths)], "circo")  # (N, D)
    q_items = [Item(str(q["id"]), image=paths[pos[int(q["reference_img_id"])]],
                    text=templates.fill(template, shared_concept=q["shared_concept"],
                                        relative_caption=q["relative_caption"])) for q in queries]
    q = ctx.encode(q_items, f"circo {split} queries")  # (Q, D)
    references = [pos[int(x["reference_img_id"])] for x in queries]
    ranked = ctx.ranked(q, g, max(opts.topk, max(KS)), references, policy)
    rankings = [[ids[i] for i in r] for r in ranked]

    out = BenchmarkOutput(metrics={}, num_queries=len(queries), gallery_size=len(ids), split=split,
                          template=templates.describe(tname, template), reference_policy=policy)
    by_id = {str(x["id"]): r for x, r in zip(queries, rankings)}  # the submission: a repeated id keeps its last
    out.files[f"circo_{split}_submission.json"] = circo_submission(by_id)
    if split == "val":
        rankings, truth = official_pairs(by_id, all_rows)
        gts = [[int(v) for v in x["gt_img_ids"]] for x in truth]
        out.metrics.update(metrics.circo_map(rankings, gts, KS))
        out.metrics.update(metrics.recall_at_k(rankings, [int(x["target_img_id"]) for x in truth], KS))
        out.details["semantic_mAP@10"] = semantic_map(rankings, gts, [x.get("semantic_aspects", []) for x in truth])
    return out


def official_pairs(by_id: dict[str, list[int]], rows: list[dict]) -> tuple[list[list[int]], list[dict]]:
    """(rankings, annotation rows) paired as the official `compute_metrics` pairs them: it scores the
    predictions of query id i against `annotations[i]`, the i-th entry of val.json, whatever that
    entry's own id. With ids 0..n-1 in order (the real file) that is the query itself; otherwise the
    official numbers pair other queries' ground truth, and so do ours, with a warning."""
    pairs = []
    for qid, ranking in by_id.items():
        i = int(qid)
        if not 0 <= i < len(rows):  # the official main asserts the ids are 0..n-1
            raise DataError(f"CIRCO val query id {qid} is not a position in val.json (0..{len(rows) - 1}); the "
                            "official evaluation reads annotations[id] and requires ids 0..n-1")
        pairs.append((ranking, rows[i]))
    moved = [qid for qid, (_, row) in zip(by_id, pairs) if str(row["id"]) != qid]
    if moved:
        log.warning("CIRCO val: %d query ids are not their position in val.json (e.g. %s); as the official "
                    "compute_metrics does, query id i is scored against the i-th annotation", len(moved), moved[:3])
    return [r for r, _ in pairs], [row for _, row in pairs]


def semantic_map(rankings: list, gts: list, aspects: list[list[str]]) -> dict[str, float]:
    """mAP@10 over the queries tagged with each semantic aspect (CIRCO val only), as the official
    script: its nine aspects in its order, NaN (np.mean of nothing) for an aspect no query carries,
    and tags outside the nine dropped. Both odd cases are logged."""
    ap = metrics.per_query_ap(rankings, gts, 10)
    tags = {a for t in aspects for a in t}
    absent = [a for a in SEMANTIC_ASPECTS if a not in tags]
    unknown = sorted(tags - set(SEMANTIC_ASPECTS))
    if absent:
        log.warning("CIRCO: no query has semantic aspect(s) %s; their mAP@10 is NaN, as in the official script",
                    absent)
    if unknown:
        log.warning("CIRCO: semantic aspect(s) %s are not among the official nine and are not reported", unknown)
    out: dict[str, float] = {}
    for name in SEMANTIC_ASPECTS:
        sel = [i for i, t in enumerate(aspects) for a in t if a == name]  # a tag listed twice counts twice
        out[name] = 100.0 * float(np.mean(ap[sel])) if sel else float("nan")
    return out
