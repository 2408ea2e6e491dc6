"""Mine stage at realistic dimensions against bare FAISS on the same saved index.

    python -m benchmarks.bench_mine --n 100000 --budget 150MB           # 768/1024/768-d
    python -m benchmarks.bench_mine --n 1000000 --budget 1GiB --root /tmp/x --rounds 0   # build, keep
    python -m benchmarks.bench_mine --n 1000000 --budget 1GiB --root /tmp/x --reuse   # every image a query
    python -m benchmarks.bench_mine --n 1000000 --budget 1GiB --root /tmp/x --reuse --queries 200000

Steps, all in this process: synthetic `Realistic` embeddings (float16, written shard by shard; kept
and reused with --reuse); the `mine_index` artifact, trained, tuned and saved once (the stage's
plan()); then, alternating to cancel the shared machine's noise (bare, stage, stage, bare, ...):
- the mine stage: every query shard searched through the memory-mapped saved index (IVF-SQ8 /
  IVF-PQ re-rank inside FAISS; on a thread, one 4,096-query block ahead of the selection), pairs
  selected and written;
- bare FAISS: the same saved index files read the same way (`read_saved`), the same query rows
  searched for the same k in the same blocks, nothing else.
By default every image is a query; `--queries` mines a seeded sample of the images
(mine.num_queries) and bare FAISS searches the same rows: seconds per million queries then
extrapolate linearly from it. The vectors and index files are
read once before the first round (a warm page cache for both sides). Then recall@k of the saved
index against exact blockwise search on `--recall-queries` sampled queries per view. Memory is RssAnon
sampled on a thread (anonymous memory: memory-mapped vectors and index files are page cache).
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
from megapairs.mine.index import INDEX_ARTIFACT, SEARCH_BLOCK, MineIndex, open_index, read_saved
from megapairs.mine.knn import recall_at_k
from megapairs.mine.stage import MineStage, query_rows
from megapairs.stages import run_stage

BLOCK = 50_000


def bare_faiss(root: Path, rows: np.ndarray, k: int) -> dict[str, float]:
    """Seconds per view: read the saved index as the stage does and search the query rows for k
    neighbours in the stage's blocks (FAISS only, plus reading the float16 query rows)."""
    manifest = json.loads(manifest_file(root / INDEX_ARTIFACT).read_text())
    vectors = open_views(root / "embeddings")
    out = {}
    for v, info in manifest["indexes"].items():
        t0 = time.perf_counter()
        index = MineIndex(info, vectors[v], read_saved(root / INDEX_ARTIFACT, info)).index  # sets nprobe
        for i in range(0, len(rows), BLOCK):
            q = vectors[v][rows[i : i + BLOCK]]  # the stage reads each shard's query rows like this
            for j in range(0, len(q), SEARCH_BLOCK):
                index.search(q[j : j + SEARCH_BLOCK], k)
        out[v] = time.perf_counter() - t0
    return out


def warm_page_cache(root: Path) -> float:
    """Read the vectors and index files once, sequentially, so that neither side pays for a cold
    page cache (a cold first round at 1M read 10 GB at random and took 12x longer). Seconds."""
    t0 = time.perf_counter()
    for folder in (root / "embeddings", root / INDEX_ARTIFACT):
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".npy", ".faiss") and path.is_file():
                with open(path, "rb") as f:
                    while f.read(1 << 24):
                        pass
    return time.perf_counter() - t0


def mine(root: Path, cfg: MineConfig) -> tuple[float, float, int]:
    """(seconds, peak RssAnon GiB, pairs) for one full run of the mine stage (plan reuses the index)."""
    shutil.rmtree(root / "pairs", ignore_errors=True)
    peak = AnonPeak()
    t0 = time.perf_counter()
    manifest = run_stage(MineStage(root, cfg), overwrite=True)
    return time.perf_counter() - t0, peak.stop(), int(manifest["rows"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", default="image=768,visual=1024,caption=768")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--budget", default="8GiB", help="mine.memory_budget")
    ap.add_argument("--index", default="auto")
    ap.add_argument("--threshold", type=int, default=50_000, help="mine.approx_threshold")
    ap.add_argument("--refine", type=int, default=3, help="mine.refine_factor")
    ap.add_argument("--queries", type=int, default=None, help="mine.num_queries (default: every image)")
    ap.add_argument("--rounds", type=int, default=2, help="stage and bare runs each, alternated")
    ap.add_argument("--recall-queries", type=int, default=1000)
    ap.add_argument("--root", default=None, help="work folder, kept (default: a new temporary one, removed)")
    ap.add_argument("--reuse", action="store_true", help="reuse the embeddings (and index) in --root")
    args = ap.parse_args()
    dims = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in args.dims.split(",")}
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-mine-"))
    try:
        if not (args.reuse and (root / "embeddings").is_dir()):
            t0 = time.perf_counter()
            write_embeddings(root, args.n, dims, shard=100_000, realistic=True)
            print(f"synthetic embeddings: {args.n:,} x {dims} in {time.perf_counter() - t0:.1f}s", flush=True)
        cfg = MineConfig(k=args.k, index=args.index, memory_budget=args.budget, approx_threshold=args.threshold,
                         refine_factor=args.refine, band_units="score", bands={v: [0.6, 0.97] for v in dims},
                         query_shard_size=BLOCK, train_size=100_000, num_queries=args.queries)
        t0 = time.perf_counter()
        MineStage(root, cfg).plan()  # trains, tunes and saves the index once (reused when it exists)
        build = time.perf_counter() - t0
        index_manifest = json.loads(manifest_file(root / INDEX_ARTIFACT).read_text())
        print(f"index (budget {args.budget}): ready in {build:.1f}s; "
              f"{index_manifest['index_bytes'] / 2**30:.2f} GiB estimated resident", flush=True)
        rows = query_rows(args.n, args.queries, cfg.seed)
        nq = len(rows)
        stage_s, bare_s, anon, pairs = [], [], [], 0
        if not args.rounds:
            return
        print(f"page cache warmed (vectors + index files read once) in {warm_page_cache(root):.1f}s", flush=True)
        for r in range(args.rounds):  # bare, stage, stage, bare, ...
            for side in (("bare", "stage") if r % 2 == 0 else ("stage", "bare")):
                if side == "bare":
                    bare_s.append(bare_faiss(root, rows, args.k + 1))
                    print(f"  bare FAISS: {sum(bare_s[-1].values()):.1f}s", flush=True)
                else:
                    t, a, pairs = mine(root, cfg)
                    stage_s.append(t)
                    anon.append(a)
                    print(f"  mine stage: {t:.1f}s, peak RssAnon {a:.2f} GiB", flush=True)
        bare = {v: float(np.mean([b[v] for b in bare_s])) for v in dims}
        total_bare, total_stage = sum(bare.values()), float(np.mean(stage_s))
        per_m = 1e6 / nq
        print(f"\n{nq:,} queries ({args.n:,} images), {args.rounds} rounds each side, means:")
        print("| view | index | nprobe | recall (build sample) | bare FAISS s | bare s / M queries |")
        print("|---|---|---|---|---|---|")
        for v, info in index_manifest["indexes"].items():
            print(f"| {v} | {info['factory']}{' + fp16 refine x' + str(info['refine_factor']) if 'refine_file' in info else ''}"
                  f" | {info.get('nprobe', '-')} | {info['expected_recall']} | {bare[v]:.1f} | {bare[v] * per_m:.0f} |")
        print(f"mine stage (search + select + write, {pairs:,} pairs): {total_stage:.1f}s = "
              f"{total_stage * per_m:.0f} s per M queries (3 views); bare FAISS {total_bare:.1f}s = "
              f"{total_bare * per_m:.0f} s per M; ratio stage / bare {total_stage / total_bare:.2f} "
              f"(per round: {', '.join(f'{s / sum(b.values()):.2f}' for s, b in zip(stage_s, bare_s))})")
        print(f"peak RssAnon during the stage: {max(anon):.2f} GiB", flush=True)
        vectors = open_views(root / "embeddings")
        indexes = open_index(root, vectors)
        q_rows = np.sort(np.random.default_rng(1).choice(args.n, size=min(args.n, args.recall_queries), replace=False))
        for v, index in indexes.items() if args.recall_queries else ():
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
