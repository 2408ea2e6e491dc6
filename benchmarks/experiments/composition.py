"""Does the synthesised data teach composition? Arms trained on one demo run's dataset, all scored
on held-out composed queries with composed, image-only and text-only queries side by side.

    python benchmarks/experiments/composition.py --run runs/demo --out /tmp/composition \\
        [--test /tmp/heldout]     # also score on another held-out set (clipart_series.py)
    [--arm e10:epochs=10]     # extra arms: the base recipe with other TrainConfig fields

Arms share the demo's recipe (seed 0, batch 32, 6 epochs, lr 1e-3, temperature 0.05, frozen
towers, sum fusion, 4 negatives: the query image + 3 mined, caption term weight 3; the run's feature
cache is reused): `sum` (the recipe itself), `combiner` (fusion=combiner, the trainable
text-conditioned combiner), `frac25` / `frac50` (nested subsets of the train triplets, same epochs),
`hn0` (no hard negatives: in-batch positives only), `nocap` (no caption term: session 4's recipe).
Scores: recall@1/5/10 from the one triplet evaluator
(`evaluate("triplets")`), the query image removed in every mode, ties ranked against the model,
paired bootstrap 95 % intervals (composed - image-only; arm - zero-shot), and, with the query image
kept, how often it ranks first.
Prints Markdown; OUT/results.json keeps everything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from megapairs.evaluate.bootstrap import paired_bootstrap
from megapairs.followup import RECALL_KS, _load, feature_cache

BASE = {"epochs": 6, "temperature": 0.05, "batch_size": 32, "num_hard_negatives": 4, "fusion": "sum", "seed": 0,
        "caption_loss_weight": 3.0}
ARMS = {"sum": {}, "combiner": {"fusion": "combiner"}, "frac25": {"train_fraction": 0.25},
        "frac50": {"train_fraction": 0.5}, "hn0": {"num_hard_negatives": 0}, "nocap": {"caption_loss_weight": 0.0}}
MODES = ("composed", "image", "text")


def query_image_first(model: Any, dataset: Path, cache: Path) -> float:
    """Share of composed queries whose own image scores highest in the gallery (query image kept)."""
    from megapairs.evaluate.common import EvalOptions, Item
    from megapairs.evaluate.context import Context
    from megapairs.evaluate.triplets import build_queries, load_rows

    rows = load_rows(dataset)
    root = dataset if (dataset / rows[0]["q_img"]).exists() else dataset / "images"
    names = sorted({p for r in rows for p in [r["q_img"], r["t_img"], *r["hns"]]})
    pos = {n: i for i, n in enumerate(names)}
    ctx = Context(model, EvalOptions(progress=False, cache_dir=str(cache)), "triplets")
    g = ctx.gallery([Item(n, image=root / n) for n in names], "triplets")  # (N, D)
    qs = build_queries(rows, "composed", "first")
    q = ctx.encode([Item(str(i), image=root / x["image"], text=x["text"]) for i, x in enumerate(qs)], "composed")
    top = (q @ g.T).argmax(1)
    return 100 * float(np.mean([top[i] == pos[x["image"]] for i, x in enumerate(qs)]))


def score(spec: str, root: Path, tests: dict[str, Path]) -> dict[str, Any]:
    """Per held-out unit, R@k hits (0 / 100) in every mode from the one triplet evaluator."""
    from megapairs.evaluate.runner import evaluate

    model = _load(spec, root)
    cache = root / "_cache" / "evaluate"
    out: dict[str, Any] = {}
    for name, data in tests.items():
        res = evaluate("triplets", data, model, {"reference_policy": "remove", "bootstrap": 0,
                                                  "cache_dir": str(cache), "progress": False})
        per = res["details"]["per_query"]
        out[name] = {"hits": {m: {k: per[m][f"R@{k}"] for k in RECALL_KS} for m in MODES},
                     "query_image_first": query_image_first(model, data, cache)}
    return out


def _fmt(b: dict[str, Any]) -> str:
    return f"{b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]"


def table(results: dict[str, Any], test: str) -> str:
    zs = results["zero-shot"][test]["hits"]
    lines = [f"### {test}", "", "| arm | query | R@1 | R@5 | R@10 | composed − image R@1 [95 % CI] | "
             "composed − image R@5 | arm − zero-shot, composed R@1 | query image 1st (kept) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, res in results.items():
        h = res[test]["hits"]
        for mode in MODES:
            vals = " | ".join(f"{np.mean(h[mode][k]):.1f}" for k in RECALL_KS)
            extra = " | | | |"
            if mode == "composed":
                ci = [paired_bootstrap(h["image"][k], h["composed"][k], resamples=2000) for k in (1, 5)]
                vz = paired_bootstrap(zs["composed"][1], h["composed"][1], resamples=2000)
                extra = (f" | {_fmt(ci[0])} | {_fmt(ci[1])} | {_fmt(vz) if arm != 'zero-shot' else '–'} | "
                         f"{res[test]['query_image_first']:.1f} |")
            lines.append(f"| {arm if mode == 'composed' else ''} | {mode} | {vals}{extra}")
    lines.append(f"\n{len(zs['composed'][1])} held-out units.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished demo run (its dataset/ is used)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--test", action="append", default=[], help="another held-out triplets folder")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--arm", action="append", default=[], metavar="NAME:FIELD=VALUE[,FIELD=VALUE]",
                    help="an extra arm: BASE with these TrainConfig fields (YAML values), e.g. e6:epochs=6")
    args = ap.parse_args()
    import yaml

    for spec in args.arm:
        name, _, fields = spec.partition(":")
        ARMS[name] = {k: yaml.safe_load(v) for k, v in (f.split("=", 1) for f in fields.split(",") if f)}
    names = [a for a in args.arms.split(",") if a] + [s.partition(":")[0] for s in args.arm]
    from megapairs.train.config import TrainConfig
    from megapairs.train.trainer import Trainer

    root, out = Path(args.run), Path(args.out)
    tests = {"validation split": root / "dataset", **{Path(t).name: Path(t) for t in args.test}}
    results: dict[str, Any] = {"zero-shot": score("offline:default", root, tests)}
    timings = {}
    for arm in names:
        t0 = time.perf_counter()
        cfg = TrainConfig.from_dict({**BASE, **ARMS[arm], "data": str(root / "dataset"), "model": "offline:default",
                                     "feature_cache_dir": str(feature_cache(root))}, arm)
        res = Trainer(cfg, out / arm).fit()
        results[arm] = score(f"ckpt:{res.final_model}", root, tests)
        timings[arm] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps({"results": results, "timings": timings}))
    for test in tests:
        print(table(results, test), "\n")
    print("train + score seconds per arm:", timings)


if __name__ == "__main__":
    main()
