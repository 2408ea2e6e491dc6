"""Does the synthesised data teach composition? Arms trained on one demo run's dataset, all scored
on held-out composed queries with composed, image-only and text-only queries side by side.

    python benchmarks/experiments/composition.py --run runs/demo --out /tmp/composition \\
        [--test /tmp/heldout]     # also score on another held-out set (clipart_series.py)

Arms (seed 0, batch 32, 3 epochs, lr 1e-3, temperature 0.02, frozen towers; the feature cache of
the run is reused): `combiner` (the demo's recipe, fusion=combiner, 4 negatives: the query image +
3 mined), `sum` (the same with BGE-VL-style sum fusion), `frac25` / `frac50` (nested subsets of the
train triplets, same epochs), `hn0` (no hard negatives: in-batch positives only). Scores: recall@1/5/10
with the query image removed and ties ranked against the model, paired bootstrap 95 % intervals
(composed - image-only; arm - zero-shot), and, with the query image kept, how often it ranks first.
Prints Markdown; OUT/results.json keeps everything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from megapairs.followup import RECALL_KS, _encode, _load, _resolve, feature_cache, paired_bootstrap, per_query_ranks

BASE = {"epochs": 3, "batch_size": 32, "num_hard_negatives": 4, "fusion": "combiner", "seed": 0}
ARMS = {"combiner": {}, "sum": {"fusion": "sum"}, "frac25": {"train_fraction": 0.25},
        "frac50": {"train_fraction": 0.5}, "hn0": {"num_hard_negatives": 0}}


def query_image_first(model: Any, dataset: Path) -> float:
    """Share of composed queries whose own image scores highest in the gallery (query image kept)."""
    from megapairs.evaluate.triplets import build_queries, load_rows

    rows = load_rows(dataset)
    names = sorted({p for r in rows for p in [r["q_img"], r["t_img"], *r["hns"]]})
    pos = {n: i for i, n in enumerate(names)}
    g = _encode(model, images=[_resolve(dataset, n) for n in names], role="candidate")
    qs = build_queries(rows, "composed", "first")
    q = _encode(model, images=[_resolve(dataset, x["image"]) for x in qs], text=[x["text"] for x in qs], role="query")
    top = (q @ g.T).argmax(1)
    return 100 * float(np.mean([top[i] == pos[x["image"]] for i, x in enumerate(qs)]))


def score(spec: str, root: Path, tests: dict[str, Path]) -> dict[str, Any]:
    model = _load(spec, root)
    out: dict[str, Any] = {}
    for name, data in tests.items():
        ranks = per_query_ranks(model, data)
        out[name] = {"ranks": {m: r.tolist() for m, r in ranks.items()},
                     "query_image_first": query_image_first(model, data)}
    return out


def _hits(ranks: list[float], k: int) -> np.ndarray:
    return (np.asarray(ranks) <= k).astype(np.float64)


def table(results: dict[str, Any], test: str) -> str:
    zs = results["zero-shot"][test]["ranks"]
    lines = [f"### {test}", "", "| arm | query | R@1 | R@5 | R@10 | composed − image R@1 [95 % CI] | "
             "composed − image R@5 | arm − zero-shot, composed R@1 | query image 1st (kept) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, res in results.items():
        r = res[test]["ranks"]
        for mode in ("composed", "image", "text"):
            vals = " | ".join(f"{100 * _hits(r[mode], k).mean():.1f}" for k in RECALL_KS)
            extra = " | | | |"
            if mode == "composed":
                ci = [paired_bootstrap(_hits(r["composed"], k), _hits(r["image"], k)) for k in (1, 5)]
                vz = paired_bootstrap(_hits(r["composed"], 1), _hits(zs["composed"], 1))
                fmt = lambda b: f"{b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]"  # noqa: E731
                extra = (f" | {fmt(ci[0])} | {fmt(ci[1])} | {fmt(vz) if arm != 'zero-shot' else '–'} | "
                         f"{res[test]['query_image_first']:.1f} |")
            lines.append(f"| {arm if mode == 'composed' else ''} | {mode} | {vals}{extra}")
    lines.append(f"\n{len(zs['composed'])} composed queries.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished demo run (its dataset/ is used)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--test", action="append", default=[], help="another held-out triplets folder")
    ap.add_argument("--arms", default=",".join(ARMS))
    args = ap.parse_args()
    from megapairs.train.config import TrainConfig
    from megapairs.train.trainer import Trainer

    root, out = Path(args.run), Path(args.out)
    tests = {"validation split": root / "dataset", **{Path(t).name: Path(t) for t in args.test}}
    results: dict[str, Any] = {"zero-shot": score("offline:default", root, tests)}
    timings = {}
    for arm in args.arms.split(","):
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
