"""Mine stage cost against a bare FAISS search over the same vectors, and the 1M-vector scale run.

    python benchmarks/bench_mine.py                 # ratio on 100k vectors x 3 views (exact index)
    python benchmarks/bench_mine.py --scale 1000000 # 1M x 3 views, IVF, recall@k vs exact, peak memory
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import peak_rss_gib, write_embeddings
from megapairs.artifacts import Artifact
from megapairs.embed.store import load_embeddings
from megapairs.mine.config import MineConfig
from megapairs.mine.knn import build_index, choose_index, recall_at_k, search
from megapairs.mine.stage import MineStage
from megapairs.stages import run_stage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--scale", type=int, default=0, help="run the scale test with this many vectors")
    ap.add_argument("--dims", default="image=128,visual=192,caption=128")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--recall-queries", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2, help="alternate bare/stage runs, keep the fastest")
    args = ap.parse_args()
    n = args.scale or args.n
    dims = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in args.dims.split(",")}
    root = Path(tempfile.mkdtemp(prefix="bench-mine-"))
    t0 = time.perf_counter()
    write_embeddings(root, n, dims)
    print(f"synthetic embeddings: {n} x {dims} in {time.perf_counter() - t0:.1f}s")
    kind = "ivf" if args.scale else "flat"
    cfg = MineConfig(k=args.k, index=kind, nprobe=args.nprobe, band_units="score",
                     bands={v: [0.5, 0.999] for v in dims}, query_shard_size=100_000)

    # Bare FAISS: build the same indexes and search every vector in every view, nothing else.
    # The two sides alternate `repeat` times and the fastest of each is kept (a shared machine).
    _, mats = load_embeddings(root / "embeddings")

    def bare_run():
        t0 = time.perf_counter()
        indexes = {v: build_index(m, kind, None, args.nprobe) for v, m in mats.items()}
        res = {v: search(indexes[v], m, args.k + 1) for v, m in mats.items()}
        return time.perf_counter() - t0, res

    bares, stages = [], []
    for _ in range(args.repeat):
        b, results = bare_run()
        bares.append(b)
        t0 = time.perf_counter()
        manifest = run_stage(MineStage(root, cfg), overwrite=True)
        stages.append(time.perf_counter() - t0)
        art = Artifact(root / "pairs")
        art.manifest_path.unlink()
        for i in art.done_shards():
            art.marker_path(i).unlink()
    bare, stage = min(bares), min(stages)
    print(f"| vectors | index | bare FAISS build+search (s) | mine stage (s) | ratio | pairs |")
    print(f"|---|---|---|---|---|---|")
    print(f"| {n:,} x {len(dims)} views | {choose_index(n, kind, 10**12)} | {bare:.1f} | {stage:.1f} | "
          f"{stage / bare:.2f} | {manifest['rows']:,} |")
    if args.scale:
        q = np.random.default_rng(1).choice(n, size=args.recall_queries, replace=False)
        for v, m in mats.items():
            exact = search(build_index(m, "flat"), m[q], args.k + 1)[1]
            print(f"recall@{args.k + 1} {v}: {recall_at_k(results[v][1][q], exact):.4f}")
    print(f"peak RSS: {peak_rss_gib():.1f} GiB")


if __name__ == "__main__":
    main()
