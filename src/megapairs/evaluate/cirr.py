"""CIRR (Cuberick-Orion/CIRR), release rc2: global Recall@{1,5,10,50} and Recall_subset@{1,2,3}.

Folder layout (the official dataset README)::

    <data>/captions/cap.rc2.{val,test1}.json       (or <data>/cirr/captions/...)
    <data>/image_splits/split.rc2.{val,test1}.json  (name -> "./dev/<name>.png")
    <data>/img_raw/{dev,test1}/<name>.png           (or the split paths relative to <data>)

Gallery = every image of the split file. val is scored on `target_hard` (the server's metric) and,
as CIRPLANT's `eval_test_scoring_step_CIRR` does, on the soft labels `target_soft` (`soft/...`:
per query the best soft score among the labelled images in the top k, floored at 0). test1 has no
targets and writes the two rc2 server files. The subset ranking breaks ties by gallery order.
Default reference policy: min, as CIRPLANT (the CIRR authors' reference code) does: the reference's
score is set to the row's minimum, so it stays in the ranking among the lowest-scoring images. This
differs from deleting it (`remove`, SEARLE) only when the top k reaches those lowest-scoring images
(k >= gallery - 1, or many images tied at the minimum). The subset metric always leaves it out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megapairs.evaluate import metrics, templates
from megapairs.evaluate.common import (BenchmarkOutput, DataError, EvalOptions, Item, check_keys,
                                       first_existing, limited, pick_root, policy_or, read_json)
from megapairs.evaluate.context import Context
from megapairs.evaluate.submission import cirr_submission

NAME = "cirr"
SPLITS = ("val", "test1")
DEFAULT_SPLIT = "val"
DEFAULT_POLICY = "min"  # CIRPLANT's eval_test_prepare_step_CIRR
KS = (1, 2, 5, 10, 50, 100)  # the server reports 1/5/10/50; CIRPLANT also 2 and 100
SUBSET_KS = (1, 2, 3)


def _split(split: str | None) -> str:
    split = {"test": "test1", "dev": "val", None: DEFAULT_SPLIT}.get(split, split)
    if split not in SPLITS:
        raise DataError(f"CIRR has splits {SPLITS}, not {split!r}")
    return split


def annotation_root(data_dir: Path, split: str) -> Path:
    name = Path("captions") / f"cap.rc2.{split}.json"
    return first_existing([data_dir / name, data_dir / "cirr" / name], f"CIRR {split} captions").parent.parent


def load(data_dir: Path, split: str, image_dir: str | None = None) -> tuple[list[dict], list[str], list[Path]]:
    """(caption rows, gallery names, gallery paths) for a split."""
    data_dir = Path(data_dir)
    root = annotation_root(data_dir, split)
    cap_path = root / "captions" / f"cap.rc2.{split}.json"
    rows = read_json(cap_path, f"CIRR {split} captions")
    check_keys(rows, ("pairid", "reference", "caption", "img_set") + (("target_hard",) if split != "test1" else ()),
               cap_path)
    split_map = read_json(root / "image_splits" / f"split.rc2.{split}.json", f"CIRR {split} image split")
    names = list(split_map)
    rel = [Path(split_map[n]) for n in names]
    roots = [Path(image_dir)] if image_dir else [data_dir / "img_raw", root / "img_raw", data_dir, root]
    base = pick_root(roots, rel[0], "CIRR images (NLVR2 raw images)") if rel else data_dir
    return rows, names, [base / p for p in rel]


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    split = _split(opts.split)
    policy = policy_or(DEFAULT_POLICY, opts)
    tname, template = templates.resolve(NAME, opts.template)
    rows, names, paths = load(Path(data_dir), split, opts.image_dir)
    rows = limited(rows, opts)
    pos = {n: i for i, n in enumerate(names)}
    # CIRPLANT maps every one of these through asin2id (a KeyError there): the targets too
    named = [[r["reference"], *r["img_set"]["members"], *([r["target_hard"]] if "target_hard" in r else []),
              *r.get("target_soft", {})] for r in rows]
    unknown = sorted({m for names_ in named for m in names_ if m not in pos})
    if unknown:
        raise DataError(f"CIRR images {unknown[:5]} are named in the captions but not in split.rc2.{split}.json")

    g = ctx.gallery([Item(n, image=p) for n, p in zip(names, paths)], f"cirr-{split}")  # (N, D)
    q_items = [Item(str(r["pairid"]), image=paths[pos[r["reference"]]],
                    text=templates.fill(template, caption=r["caption"])) for r in rows]
    q = ctx.encode(q_items, f"cirr {split} queries")  # (Q, D)
    references = [pos[r["reference"]] for r in rows]
    ranked = ctx.ranked(q, g, max(opts.topk, max(KS)), references, policy)  # (Q,) arrays of <= 100
    rankings = [[names[i] for i in r] for r in ranked]
    members = [r["img_set"]["members"] for r in rows]
    member_pos = [[pos[m] for m in ms] for ms in members]
    member_scores = [g[mp] @ q[i] for i, mp in enumerate(member_pos)]  # (6,) each
    subset = [metrics.subset_ranking(s, ms, r["reference"], mp)
              for s, ms, r, mp in zip(member_scores, members, rows, member_pos)]

    out = BenchmarkOutput(metrics={}, num_queries=len(rows), gallery_size=len(names), split=split,
                          template=templates.describe(tname, template), reference_policy=policy)
    ids = [r["pairid"] for r in rows]
    out.files[f"cirr_{split}_recall.json"] = cirr_submission(dict(zip(ids, rankings)), "recall")
    out.files[f"cirr_{split}_recall_subset.json"] = cirr_submission(dict(zip(ids, subset)), "recall_subset")
    if split != "test1":
        targets = [r["target_hard"] for r in rows]
        out.metrics.update(metrics.recall_at_k(rankings, targets, KS))
        out.metrics.update(metrics.recall_at_k(subset, targets, SUBSET_KS, prefix="Rsubset"))
        out.metrics["(R@5+Rsubset@1)/2"] = float(np.mean([out.metrics["R@5"], out.metrics["Rsubset@1"]]))
        if all("target_soft" in r for r in rows):  # CIRPLANT's soft-label variant
            soft = [r["target_soft"] for r in rows]
            out.metrics.update(metrics.soft_recall_at_k(rankings, soft, KS, prefix="soft/R"))
            out.metrics.update(metrics.soft_recall_at_k(subset, soft, SUBSET_KS, prefix="soft/Rsubset"))
    return out
