"""Mine stage at realistic dimensions against bare FAISS on the same saved index.

    python -m benchmarks.bench_mine --n 100000                     # 768/1024/768-d, index by budget
    python -m benchmarks.bench_mine --n 1000000 --budget 1GiB      # the scale run

Steps, all in this process: synthetic `Realistic` embeddings (float16, written shard by shard);
the mine stage (its plan() trains and saves the `mine_index` artifact once, then every query
shard is searched through the memory-mapped index with exact re-ranking and pairs are selected);
bare FAISS: the same saved index read with IO_FLAG_MMAP, every vector searched for the same
number of candidates, nothing else; recall@k of the stage's search against exact blockwise search
on `--recall-queries` sampled queries per view. Memory is RssAnon sampled on a thread (anonymous
memory: the memory-mapped vectors and index files are page cache and not counted).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import AnonPeak, write_embeddings
from megapairs.artifacts import manifest_file
from megapairs.embed.store import open_views
from megapairs.mine.config import MineConfig
from megapairs.mine.exact import exact_knn
from megapairs.mine.index import INDEX_ARTIFACT, REFINED, SEARCH_BLOCK, open_index, read_saved
from megapairs.mine.knn import recall_at_k
from megapairs.mine.stage import MineStage
from megapairs.stages import run_stage

BLOCK = 50_000


def bare_faiss(root: Path, k: int) -> dict[str, float]:
    """Seconds per view: read the saved index (mmap) and search every vector for the candidates."""
    manifest = json.loads(manifest_file(root / INDEX_ARTIFACT).read_text())
    vectors = open_views(root / "embeddings")
    out = {}
    for v, info in manifest["indexes"].items():
        t0 = time.perf_counter()
        index = read_saved(root / INDEX_ARTIFACT / info["file"], info["kind"])
        if info["kind"] != "hnsw":
            import faiss

            faiss.extract_index_ivf(index).nprobe = info["nprobe"]
        kc = k * (info["refine_factor"] if info["kind"] in REFINED else 1)
        for _, q in vectors[v].blocks(SEARCH_BLOCK):  # the stage searches in these blocks too
            index.search(q, kc)
        out[v] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", default="image=768,visual=1024,caption=768")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--budget", default="8GiB", help="mine.memory_budget")
    ap.add_argument("--index", default="auto")
    ap.add_argument("--threshold", type=int, default=50_000, help="mine.approx_threshold")
    ap.add_argument("--refine", type=int, default=3, help="mine.refine_factor")
    ap.add_argument("--recall-queries", type=int, default=1000)
    ap.add_argument("--root", default=None, help="work folder (default: a new temporary one, removed)")
    args = ap.parse_args()
    dims = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in args.dims.split(",")}
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-mine-"))
    try:
        t0 = time.perf_counter()
        write_embeddings(root, args.n, dims, shard=100_000, realistic=True)
        print(f"synthetic embeddings: {args.n:,} x {dims} in {time.perf_counter() - t0:.1f}s", flush=True)
        cfg = MineConfig(k=args.k, index=args.index, memory_budget=args.budget, approx_threshold=args.threshold,
                         refine_factor=args.refine, band_units="score", bands={v: [0.6, 0.97] for v in dims},
                         query_shard_size=BLOCK, train_size=100_000)
        peak = AnonPeak()
        start_anon = peak.peak
        stage = MineStage(root, cfg)
        t0 = time.perf_counter()
        stage.plan()  # trains, tunes and saves the index once
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = run_stage(stage)  # plan() now reuses the saved index
        mine = time.perf_counter() - t0
        stage_anon = peak.stop()
        bare = bare_faiss(root, args.k + 1)
        index_manifest = json.loads(manifest_file(root / INDEX_ARTIFACT).read_text())
        print(f"index (budget {args.budget}): built, tuned and saved in {build:.1f}s; "
              f"{index_manifest['index_bytes'] / 2**30:.2f} GiB estimated resident")
        print("| view | index | nprobe | expected recall (build sample) | bare FAISS s | s / M queries |")
        print("|---|---|---|---|---|---|")
        for v, info in index_manifest["indexes"].items():
            print(f"| {v} | {info['factory']} | {info.get('nprobe', '-')} | {info['expected_recall']} | "
                  f"{bare[v]:.1f} | {bare[v] * 1e6 / args.n:.0f} |")
        total_bare = sum(bare.values())
        print(f"mine stage (search + re-rank + select + write, {manifest['rows']:,} pairs): {mine:.1f}s = "
              f"{mine * 1e6 / args.n:.0f} s per M queries (3 views); bare FAISS total {total_bare:.1f}s; "
              f"ratio stage / bare {mine / total_bare:.2f}")
        print(f"peak RssAnon during the stage: {stage_anon:.2f} GiB (before it: {start_anon:.2f} GiB)", flush=True)
        vectors = open_views(root / "embeddings")
        indexes = open_index(root, vectors)
        q_rows = np.sort(np.random.default_rng(1).choice(args.n, size=min(args.n, args.recall_queries), replace=False))
        for v, index in indexes.items():
            q = vectors[v][q_rows]
            t0 = time.perf_counter()
            exact = exact_knn(q, vectors[v], args.k + 1, "cpu")[1]
            t_exact = time.perf_counter() - t0
            print(f"recall@{args.k + 1} {v} on {len(q_rows)} queries: {recall_at_k(index.search(q, args.k + 1)[1], exact):.4f}"
                  f"  (exact search: {t_exact:.1f}s = {t_exact * 1e6 / len(q_rows):.0f} s per M queries)", flush=True)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
