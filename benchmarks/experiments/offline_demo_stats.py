"""Per-query analysis of the offline_demo.py runs: re-scores the composed (and image / text) queries
exactly as `megapairs evaluate --benchmark triplets` does (same query merging, same gallery, keep
policy, ties by gallery order), checks that the recalls match the evaluate JSON, and adds

- paired bootstrap 95 % intervals (2,000 resamples of the queries) of each arm's R@k minus the
  zero-shot R@k (and minus the `full` arm's), and
- how often the query's own image is ranked first (it stays in the gallery as a distractor).

    HF_HUB_OFFLINE=1 MEGAPAIRS_OFFLINE_FEATURE_CACHE=OUT/feature-cache \\
        .venv/bin/python benchmarks/experiments/offline_demo_stats.py --out OUT [--val FILE]

Writes OUT/stats.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

KS = (1, 5, 10)
MODES = ("composed", "image", "text")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/mp/exp/offline-demo")
    p.add_argument("--val", default="/tmp/mp/runs/train-demo/dataset/validation/part-00000.parquet")
    p.add_argument("--boot", type=int, default=2000)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    os.environ.setdefault("MEGAPAIRS_OFFLINE_FEATURE_CACHE", str(out / "feature-cache"))

    import torch

    from megapairs.evaluate.triplets import build_queries, load_rows
    from megapairs.models.base import load_retriever

    val = Path(args.val)
    rows = load_rows(val)
    root = val.parent.parent  # the dataset folder: rows hold paths relative to it
    names = sorted({n for r in rows for n in [r["q_img"], r["t_img"], *r["hns"]]})
    pos = {n: i for i, n in enumerate(names)}
    queries = {m: build_queries(rows, m, "first") for m in MODES}

    arms = ["zero-shot"] + sorted(d.name for d in (out / "runs").iterdir() if (d / "final").exists())
    ranks: dict[str, dict[str, np.ndarray]] = {}
    self_first: dict[str, float] = {}
    for arm in arms:
        model = load_retriever("offline:default" if arm == "zero-shot" else f"ckpt:{out / 'runs' / arm}", device="cpu")
        with torch.inference_mode():
            g = model.encode(images=[str(root / n) for n in names]).numpy()  # (N, D)
            ranks[arm] = {}
            for mode, qs in queries.items():
                imgs = [str(root / q["image"]) for q in qs] if mode != "text" else None
                texts = [q["text"] for q in qs] if mode != "image" else None
                q = model.encode(images=imgs, text=texts).numpy()  # (Q, D)
                scores = q @ g.T  # (Q, N)
                order = np.argsort(-scores, axis=1, kind="stable")  # ties: gallery order
                best = []
                for i, qq in enumerate(qs):
                    hit = np.isin(order[i], [pos[t] for t in qq["targets"]])
                    best.append(int(np.argmax(hit)) + 1)
                ranks[arm][mode] = np.array(best)
                if mode == "composed":
                    self_first[arm] = float(np.mean([names[order[i][0]] == qq["image"] for i, qq in enumerate(qs)]))
        ev = out / "eval" / arm / "triplets_val.json"
        if ev.exists():  # sanity: the same numbers as `megapairs evaluate`
            m = json.loads(ev.read_text())["metrics"]
            for mode in MODES:
                for k in KS:
                    mine = 100 * float(np.mean(ranks[arm][mode] <= k))
                    if abs(mine - m[f"{mode}/R@{k}"]) > 0.31:  # one query of 337 is 0.30 points
                        print(f"warning: {arm} {mode} R@{k}: {mine:.2f} here, {m[f'{mode}/R@{k}']:.2f} in {ev}",
                              file=sys.stderr)

    rng = np.random.default_rng(0)
    nq = len(queries["composed"])
    idx = rng.integers(0, nq, size=(args.boot, nq))
    stats: dict[str, dict] = {}
    for arm in arms:
        r = ranks[arm]["composed"]
        entry = {"self_first": self_first[arm], "composed_recall": {k: 100 * float(np.mean(r <= k)) for k in KS}}
        for ref in ("zero-shot", "full"):
            if ref == arm or ref not in ranks:
                continue
            base = ranks[ref]["composed"]
            diffs = {}
            for k in KS:
                d = (r <= k).astype(float) - (base <= k).astype(float)  # (Q,)
                boot = 100 * d[idx].mean(1)
                diffs[k] = {"diff": 100 * float(d.mean()), "lo": float(np.percentile(boot, 2.5)),
                            "hi": float(np.percentile(boot, 97.5))}
            entry[f"vs_{ref}"] = diffs
        stats[arm] = entry
    (out / "stats.json").write_text(json.dumps({"queries": {m: len(q) for m, q in queries.items()},
                                                 "gallery": len(names), "arms": stats}, indent=2))
    print(f"composed queries {nq}, gallery {len(names)}\n")
    print("| arm | query image ranked 1st | ΔR@1 vs zero-shot [95 % CI] | ΔR@5 | ΔR@10 |")
    print("|---|---|---|---|---|")
    for arm, e in stats.items():
        cells = ["–"] * 3
        if "vs_zero-shot" in e:
            cells = [f"{v['diff']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}]" for v in e["vs_zero-shot"].values()]
        print(f"| {arm} | {100 * e['self_first']:.1f} % | " + " | ".join(cells) + " |")
    print("\n| arm | ΔR@1 vs full [95 % CI] | ΔR@5 | ΔR@10 |")
    print("|---|---|---|---|")
    for arm, e in stats.items():
        if "vs_full" in e:
            print(f"| {arm} | " + " | ".join(f"{v['diff']:+.1f} [{v['lo']:+.1f}, {v['hi']:+.1f}]"
                                             for v in e["vs_full"].values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
