"""Held-out evaluation on our own exported validation triplets.

Input: a Parquet/JSONL file, or a folder of them (e.g. an export artifact with part-*.parquet), with
columns q_img (path), q_text (list of instructions, or one string), t_img (path) and optionally hns
(hard-negative paths). The names query_image / query_texts / target_image / hard_negative_images are
accepted too. Relative paths resolve against --image-dir, else the data folder (or its images/).

Gallery = every distinct image of the set (q_img, t_img and hns). Queries, per mode:
composed (q_img + instruction), image (q_img alone), text (instruction alone). Identical queries are
merged and any of their targets counts as a hit. Metrics: Recall@1/5/10 and mAP@{5,10,25,50}.
Instructions: the first per row (default) or all, each its own query. Default reference policy:
keep (the query image stays in the gallery as the hardest distractor, as in MegaPairs training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from megapairs.evaluate import metrics, templates
from megapairs.evaluate.common import (BenchmarkOutput, DataError, EvalOptions, Item, limited, pick_root,
                                       policy_or, require)
from megapairs.evaluate.context import Context

NAME = "triplets"
DEFAULT_POLICY = "keep"
RECALL_KS = (1, 5, 10)
MAP_KS = (5, 10, 25, 50)
ALIASES = {"query_image": "q_img", "query_texts": "q_text", "target_image": "t_img", "hard_negative_images": "hns"}


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".json":
        return list(json.loads(path.read_text()))
    raise DataError(f"triplets file {path} is not .parquet, .jsonl or .json")


def load_rows(data: Path) -> list[dict[str, Any]]:
    require(data, "validation triplets")
    if data.is_dir() and (data / "validation").is_dir():  # an exported dataset folder
        data = data / "validation"
    # The export writes the same rows as Parquet and JSONL: read one format, Parquet first.
    files = [data] if data.is_file() else (sorted(data.glob("*.parquet")) or sorted(data.glob("*.jsonl")))
    if not files:
        raise DataError(f"no .parquet or .jsonl triplet files in {data}")
    rows = []
    for f in files:
        for r in _read(f):
            r = {ALIASES.get(k, k): v for k, v in r.items()}
            missing = [c for c in ("q_img", "q_text", "t_img") if c not in r]
            if missing:
                raise DataError(f"{f}: a row lacks column(s) {missing} (need q_img, q_text, t_img)")
            texts = [r["q_text"]] if isinstance(r["q_text"], str) else list(r["q_text"])
            if not texts:
                raise DataError(f"{f}: a row has no instruction in q_text")
            rows.append({"q_img": str(r["q_img"]), "q_text": texts, "t_img": str(r["t_img"]),
                         "hns": [str(h) for h in (r.get("hns") or [])]})
    return rows


def build_queries(rows: list[dict], mode: str, instructions: str) -> list[dict]:
    """Merged queries of one mode: {"image", "text", "targets" (set), "reference" (q_img or None)}."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        for text in (r["q_text"][:1] if instructions == "first" else r["q_text"]):
            key = {"composed": (r["q_img"], text), "image": (r["q_img"],), "text": (text,)}[mode]
            g = groups.setdefault(key, {"image": r["q_img"], "text": text, "targets": set(), "refs": set()})
            g["targets"].add(r["t_img"])
            g["refs"].add(r["q_img"])
    for g in groups.values():
        g["reference"] = next(iter(g["refs"])) if len(g["refs"]) == 1 else None
    return list(groups.values())


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    policy = policy_or(DEFAULT_POLICY, opts)
    tname, template = templates.resolve(NAME, opts.template)
    data = Path(data_dir)
    rows = limited(load_rows(data), opts)
    folder = data if data.is_dir() else data.parent
    roots = [Path(opts.image_dir)] if opts.image_dir else [folder, folder / "images", folder.parent]
    root = pick_root(roots, rows[0]["q_img"], "triplet images") if rows else folder
    names = sorted({p for r in rows for p in [r["q_img"], r["t_img"], *r["hns"]]})
    pos = {n: i for i, n in enumerate(names)}
    g = ctx.gallery([Item(n, image=root / n) for n in names], "triplets")  # (N, D)

    out = BenchmarkOutput(metrics={}, num_queries=0, gallery_size=len(names), split=opts.split or "val",
                          template=templates.describe(tname, template), reference_policy=policy)
    for mode in opts.query_modes:
        queries = build_queries(rows, mode, opts.instructions)
        items = [Item(str(i), image=root / q["image"] if mode != "text" else None,
                      text=templates.fill(template, instruction=q["text"]) if mode != "image" else None)
                 for i, q in enumerate(queries)]
        q = ctx.encode(items, f"triplets {mode} queries")  # (Q, D)
        exclude = [pos[x["reference"]] if x["reference"] else None for x in queries] if policy == "remove" else None
        ranked = ctx.search(q, g, k=max(opts.topk, max(MAP_KS)), exclude=exclude)
        rankings = [[names[i] for i in r] for r in ranked]
        targets = [x["targets"] for x in queries]
        m = metrics.recall_at_k(rankings, targets, RECALL_KS)
        m.update(metrics.circo_map(rankings, [sorted(t) for t in targets], MAP_KS))
        out.metrics.update({f"{mode}/{k}": v for k, v in m.items()})
        out.details[f"{mode}_queries"] = len(queries)
        out.num_queries = max(out.num_queries, len(queries))
    return out
