"""Two Ray actors sharing one saved mining index: anonymous memory per actor, mmap vs in-memory.

    python -m benchmarks.bench_ray_index --n 200000 --dim 1024                 # IVF-Flat
    python -m benchmarks.bench_ray_index --n 200000 --dim 1024 --index ivf_pq  # + float16 refine

The driver builds the `mine_index` artifact once (the stage's plan()). Each of two Ray actors then
builds the real mine worker (`MineStage.make_worker()`: ids, memory-mapped float16 vectors, the
saved index memory-mapped by `read_saved`), mines one query shard, and reports its RssAnon; then
it loads the same index files the old way (read fully into memory) and reports RssAnon again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks._common import rss_anon_gib, write_embeddings
from megapairs.artifacts import manifest_file
from megapairs.mine.config import MineConfig
from megapairs.mine.index import INDEX_ARTIFACT
from megapairs.mine.stage import MineStage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--index", default="ivf_flat")
    ap.add_argument("--nlist", type=int, default=256)
    args = ap.parse_args()
    import ray

    root = Path(tempfile.mkdtemp(prefix="bench-ray-index-"))
    try:
        write_embeddings(root, args.n, {"visual": args.dim}, shard=100_000, realistic=True)
        cfg = MineConfig(k=10, index=args.index, nlist=args.nlist, nprobe=8, approx_threshold=1000,
                         bands={"visual": [0.6, 0.97]}, query_shard_size=5000, train_size=50_000)
        stage = MineStage(root, cfg)
        stage.output().begin(overwrite=True)
        tasks = stage.plan()  # builds and saves the index once
        manifest = json.loads(manifest_file(root / INDEX_ARTIFACT).read_text())
        info = manifest["indexes"]["visual"]
        file_gib = info["file_bytes"] / 2**30
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)

        @ray.remote(num_cpus=1)
        class Miner:
            def __init__(self, stage: MineStage) -> None:
                self.start = rss_anon_gib()
                self.worker = stage.make_worker()

            def run(self, task) -> dict[str, float]:
                self.worker(task)
                mapped = rss_anon_gib()
                from megapairs.embed.store import open_views
                from megapairs.mine.index import open_index

                self.copy = open_index(root, open_views(root / "embeddings"), mmap=False)  # the old way
                return {"start": self.start, "mmap": mapped, "in_memory": rss_anon_gib()}

        actors = [Miner.remote(stage) for _ in range(2)]
        results = ray.get([a.run.remote(t) for a, t in zip(actors, tasks)])
        print(f"index {info['factory']} over {args.n:,} x {args.dim}: file {file_gib:.2f} GiB")
        print("| actor | RssAnon at start (GiB) | after mining a shard, index mmapped | + the index read into memory |")
        print("|---|---|---|---|")
        for i, r in enumerate(results):
            print(f"| {i} | {r['start']:.2f} | {r['mmap']:.2f} (+{r['mmap'] - r['start']:.2f}) | "
                  f"{r['in_memory']:.2f} (+{r['in_memory'] - r['mmap']:.2f}) |")
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
