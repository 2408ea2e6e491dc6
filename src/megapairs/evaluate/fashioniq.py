"""FashionIQ (XiaoxiaoGuo/fashion-iq), val split: R@10 / R@50 per category and their mean, plus the
other numbers MegaPairs' `eval_fashioniq.py` prints (R@1/5/20/100, MRR@1/5/10/20/50/100).

Folder layout (the official release; MagicLens `data/README.md`)::

    <data>/captions/cap.{dress,shirt,toptee}.val.json      [{"candidate", "target", "captions": [c1, c2]}]
    <data>/image_splits/split.{dress,shirt,toptee}.val.json [image names]
    <data>/images/<name>.png  (.jpg accepted)

Per-category gallery = that category's image split (dress 3,817 / shirt 6,346 / toptee 5,373 on val).
Query text joins the two captions (MegaPairs: "{c1}, and {c2}"). Default reference policy: keep
(MegaPairs' `eval_fashioniq.py`, CLIP4Cir, SEARLE do not remove the candidate image).
"""

from __future__ import annotations

import logging
from pathlib import Path

from megapairs.evaluate import metrics, templates
from megapairs.evaluate.common import (BenchmarkOutput, DataError, EvalOptions, Item, check_keys, limited,
                                       policy_or, read_json, require)
from megapairs.evaluate.context import Context

NAME = "fashioniq"
CATEGORIES = ("dress", "shirt", "toptee")
DEFAULT_SPLIT = "val"
DEFAULT_POLICY = "keep"
KS = (1, 5, 10, 20, 50, 100)  # MegaPairs' eval_fashioniq.py cutoffs; the paper reports R@10 / R@50
EXTENSIONS = (".png", ".jpg", ".jpeg")
log = logging.getLogger("megapairs")


def load_category(data_dir: Path, category: str, split: str) -> tuple[list[dict], list[str]]:
    """(caption rows, gallery image names) of one category."""
    if category not in CATEGORIES:
        raise DataError(f"FashionIQ categories are {CATEGORIES}, not {category!r}")
    cap_path = Path(data_dir) / "captions" / f"cap.{category}.{split}.json"
    rows = read_json(cap_path, f"FashionIQ {category} {split} captions")
    check_keys(rows, ("candidate", "captions"), cap_path)
    names = read_json(Path(data_dir) / "image_splits" / f"split.{category}.{split}.json",
                      f"FashionIQ {category} {split} image split")
    return rows, [str(n) for n in names]


def image_index(folder: Path) -> dict[str, Path]:
    """Image name (file stem) -> path, for the extensions FashionIQ copies ship with."""
    require(folder, "FashionIQ images folder")
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS}


def _path(index: dict[str, Path], folder: Path, name: str) -> Path:
    if name not in index:
        raise DataError(f"missing FashionIQ image: {folder / (name + '.png')}")
    return index[name]


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    split = opts.split or DEFAULT_SPLIT
    policy = policy_or(DEFAULT_POLICY, opts)
    tname, template = templates.resolve(NAME, opts.template)
    folder = Path(opts.image_dir) if opts.image_dir else Path(data_dir) / "images"
    data = {c: load_category(data_dir, c, split) for c in opts.categories}  # check every file first
    index = image_index(folder)
    per_cat: dict[str, dict[str, float]] = {}
    files: dict[str, dict] = {}
    n_queries, sizes = 0, {}
    for cat, (rows, names) in data.items():
        rows = limited(rows, opts)
        pos = {n: i for i, n in enumerate(names)}
        g = ctx.gallery([Item(n, image=_path(index, folder, n)) for n in names], f"fashioniq-{cat}-{split}")
        q_items = []
        for i, r in enumerate(rows):
            caps = [c.strip() for c in r["captions"]] + ["", ""]
            q_items.append(Item(str(i), image=_path(index, folder, r["candidate"]),
                                text=templates.fill(template, c1=caps[0], c2=caps[1])))
        q = ctx.encode(q_items, f"fashioniq {cat} queries")  # (Q, D)
        references = [pos.get(r["candidate"]) for r in rows]
        ranked = ctx.ranked(q, g, max(opts.topk, max(KS)), references, policy)
        rankings = [[names[j] for j in r] for r in ranked]
        files[f"fashioniq_{cat}_{split}_rankings.json"] = [
            {"candidate": r["candidate"], "target": r.get("target"), "ranking": rk[:50]}
            for r, rk in zip(rows, rankings)]
        if all("target" in r for r in rows):
            targets = [r["target"] for r in rows]
            outside = sum(1 for t in targets if t not in pos)
            if outside:  # MegaPairs' eval counts them as misses; CLIP4Cir/SEARLE would fail an assert
                log.warning("FashionIQ %s: %d of %d targets are not in the %s gallery; they count as misses",
                            cat, outside, len(targets), cat)
            per_cat[cat] = {**metrics.recall_at_k(rankings, targets, KS), **metrics.mrr_at_k(rankings, targets, KS)}
        n_queries, sizes[cat] = n_queries + len(rows), len(names)
    out = BenchmarkOutput(metrics=metrics.fashioniq_summary(per_cat) if per_cat else {}, num_queries=n_queries,
                          gallery_size=", ".join(f"{c} {n}" for c, n in sizes.items()), split=split,
                          template=templates.describe(tname, template), reference_policy=policy, files=files)
    return out
