"""Two versions of the mine stage side by side against bare FAISS, alternated in one process.

    git archive 392f4f5 src | tar -x -C /tmp/old
    python -m benchmarks.bench_mine --n 100000 --budget 150MB --root /tmp/d --rounds 0   # build once
    python -m benchmarks.bench_mine_ab --root /tmp/d --n 100000 --budget 150MB --old /tmp/old/src --new src

Rounds alternate bare, old, new / new, old, bare on the same saved index (`bench_mine`'s bare
FAISS: the same index files, rows and blocks). Each version's modules are imported from its own
source folder; bare FAISS and the page-cache warming use the last one imported (--new). Every
stage run's Parquet files are hashed: the two versions must write the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import AnonPeak

DIMS = ("image", "visual", "caption")


def load(src: str, budget: str, queries: int | None, threshold: int) -> tuple[Any, Any, Any, Any]:
    """run_stage, MineStage, the bench's MineConfig and query_rows from the megapairs in `src`."""
    for name in [m for m in sys.modules if m == "megapairs" or m.startswith("megapairs.")]:
        del sys.modules[name]
    sys.path.insert(0, src)
    try:
        import megapairs.mine.config as config
        import megapairs.mine.stage as stage
        import megapairs.stages as stages
    finally:
        sys.path.remove(src)
    cfg = config.MineConfig(k=10, index="auto", memory_budget=budget, approx_threshold=threshold, refine_factor=3,
                            band_units="score", bands={v: [0.6, 0.97] for v in DIMS}, query_shard_size=50_000,
                            train_size=100_000, num_queries=queries)
    return stages.run_stage, stage.MineStage, cfg, stage.query_rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="a folder built by bench_mine (embeddings + mine_index)")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--budget", required=True, help="the bench_mine --budget the index was built with")
    ap.add_argument("--old", required=True, help="source folder (the one holding megapairs/) of the code before")
    ap.add_argument("--new", required=True, help="source folder of the code after")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--threshold", type=int, default=50_000, help="the bench_mine --threshold the index was built with")
    args = ap.parse_args()
    root = Path(args.root)
    sides = {side: load(src, args.budget, args.queries, args.threshold) for side, src in (("old", args.old), ("new", args.new))}
    from benchmarks.bench_mine import bare_faiss, warm_page_cache  # after the loads: the --new code

    rows = sides["new"][3](args.n, args.queries, 0)
    print(f"page cache warmed in {warm_page_cache(root):.1f}s", flush=True)
    secs: dict[str, list[float]] = {"old": [], "new": [], "bare": []}
    digests: dict[str, set[str]] = {"old": set(), "new": set()}
    for r in range(args.rounds):
        for side in (("bare", "old", "new") if r % 2 == 0 else ("new", "old", "bare")):
            if side == "bare":
                secs["bare"].append(sum(bare_faiss(root, rows, 11).values()))
                print(f"  bare FAISS: {secs['bare'][-1]:.1f}s", flush=True)
                continue
            run, stage_cls, cfg, _ = sides[side]
            shutil.rmtree(root / "pairs", ignore_errors=True)
            peak = AnonPeak()
            t0 = time.perf_counter()
            manifest = run(stage_cls(root, cfg), overwrite=True)
            secs[side].append(time.perf_counter() - t0)
            files = sorted((root / "pairs").glob("part-*.parquet"))
            digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]
            digests[side].add(digest)
            print(f"  {side}: {secs[side][-1]:.1f}s, peak RssAnon {peak.stop():.2f} GiB, "
                  f"{manifest['rows']:,} pairs, Parquet sha256 {digest}", flush=True)
    for side, values in secs.items():
        print(f"{side}: {', '.join(f'{v:.1f}' for v in values)}; mean {np.mean(values):.2f}s")
    for side in ("old", "new"):
        per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(secs[side], secs["bare"]))
        print(f"ratio {side} / bare FAISS: {np.mean(secs[side]) / np.mean(secs['bare']):.3f} (per round: {per_round})")
    same = len(digests["old"] | digests["new"]) == 1
    print("Parquet bytes: " + ("identical in every run" if same else f"DIFFERENT {digests}"))


if __name__ == "__main__":
    main()
