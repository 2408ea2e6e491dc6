"""The export plan and the training data at scale: synthetic mined pairs + annotations, no pixels.

    python -m benchmarks.bench_export_scale --triplets 5000000 --images 2000000
    python -m benchmarks.bench_export_scale --triplets 200000 --images 80000 --compare   # + 0.2 code

Phases, each in its own process (so one phase's memory does not count in the next), under
OUT (default /tmp/s-stream/bench_export):
1. gen      corpus (id, status, caption), pairs (5 hard negatives, 3 views' scores) and annotations
            (3 instructions, a description) artifacts, written shard by shard with Arrow.
2. plan     `ExportStage._make_plan`: join, split, confine negatives, order, and write every row of
            `_plan/triplets.parquet` (the rows the shard workers copy), image owners, stats.
3. build    `load_triplets(_plan/triplets.parquet, cache=...)`: rank 0 writes the rows as the
            memory-mapped Arrow file of training.
4. rank 0/1 two processes at once, like two DDP ranks: map the file, `TripletDataset` over every
            row, `StepSampler(world_size=2)`, draw `--steps` batches of this rank's share.
With `--compare`, also the 0.2 row-by-row plan (`tests/export/_reference.py`) and the 0.2 loader
(a `read_triplets` dict per row) on the same data, side by side. Memory is RssAnon sampled on a
thread every 0.1 s (memory-mapped inputs are page cache, not anonymous memory).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks._common import AnonPeak
from megapairs.artifacts import Artifact, open_complete, write_table

GIB = 4.0  # the target for each phase's peak RssAnon
S, LS = pa.string(), pa.list_(pa.string())


def _artifact(path: Path, kind: str, tables) -> int:
    art = Artifact(path, f"hash-{kind}", {})
    art.begin(overwrite=True)
    n = 0
    for i, t in enumerate(tables):
        write_table(art.shard_path(i), t)
        art.mark_done(i, t.num_rows, [art.shard_path(i).name])
        n = i + 1
    art.write_manifest(kind=kind, num_shards=n, extra={})
    return n


def generate(root: Path, n_pairs: int, n_images: int, seed: int = 0, shard: int = 500_000) -> None:
    rng = np.random.default_rng(seed)
    ids = pa.array([f"{x:032x}" for x in rng.integers(0, 2**63, n_images, dtype=np.int64)], S)
    words = pa.array([f"make the {a} {b} look {c}" for a in ("red", "small", "old", "blue", "tall")
                      for b in ("car", "dog", "house", "tree", "lamp", "cup") for c in ("darker", "bigger", "new")])

    def corpus():
        for s in range(0, n_images, shard):
            part = ids.slice(s, shard)
            yield pa.table({"id": part, "status": pa.array(["ok"] * len(part)),
                            "caption": pa.array([None] * len(part), S)})

    def pairs_and_annotations(which: str):
        r = np.random.default_rng([seed, 1])  # same draws for both artifacts
        for s in range(0, n_pairs, shard):
            m = min(shard, n_pairs - s)
            q, t = r.integers(0, n_images, m), r.integers(0, n_images, m)
            negs = r.integers(0, n_images, (m, 4))
            texts = r.integers(0, len(words), (m, 3))
            scores = r.uniform(0.6, 0.97, (m, 3))
            rank = r.integers(0, 10, m).astype(np.int32)  # drawn for both artifacts: same stream
            qs, ts = ids.take(pa.array(q)), ids.take(pa.array(t))
            if which == "pairs":
                flat = ids.take(pa.array(np.concatenate([q[:, None], negs], axis=1).ravel()))
                views = pa.array(np.array(["image", "visual", "caption"])[scores.argmax(1)])
                yield pa.table({
                    "query_id": qs, "target_id": ts,
                    "found_by": pa.ListArray.from_arrays(pa.array(np.arange(m + 1, dtype=np.int32)), views),
                    "best_view": views, "best_score": pa.array(scores.max(1).astype(np.float32)),
                    "score_image": pa.array(scores[:, 0].astype(np.float32)),
                    "score_visual": pa.array(scores[:, 1].astype(np.float32)),
                    "score_caption": pa.array(scores[:, 2].astype(np.float32)),
                    "hard_negatives": pa.ListArray.from_arrays(pa.array(np.arange(0, 5 * m + 1, 5, dtype=np.int32)), flat),
                    "pair_rank": pa.array(rank),
                })
            else:
                instr = pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * m + 1, 3, dtype=np.int32)),
                                                 words.take(pa.array(texts.ravel())))
                yield pa.table({
                    "query_id": qs, "target_id": ts, "description": words.take(pa.array(texts[:, 0])),
                    "instructions": instr, "status": pa.array(["ok"] * m), "reason": pa.nulls(m, S),
                    "describer": pa.array(["captions:bench"] * m), "writer": pa.array(["bench"] * m),
                    "writer_used": pa.array(["bench"] * m), "prompt_version": pa.array(["v1"] * m),
                })

    _artifact(root / "corpus", "corpus", corpus())
    _artifact(root / "pairs", "pairs", pairs_and_annotations("pairs"))
    _artifact(root / "annotations", "annotations", pairs_and_annotations("annotations"))


def phase_plan(root: Path) -> dict:
    from megapairs.export import ExportConfig, ExportStage

    out = root / "dataset"
    stage = ExportStage(root, ExportConfig(formats=["parquet"]), output=out)
    peak, t0 = AnonPeak(), time.perf_counter()
    stage._make_plan()
    seconds, gib = time.perf_counter() - t0, peak.stop()
    stats = json.loads((out / "_plan" / "stats.json").read_text())
    return {"seconds": round(seconds, 1), "peak_rss_anon_gib": round(gib, 2), "triplets": stats["triplets"],
            "splits": stats["splits"], "images": stats["images"], "carved": stats["split_policy"]["carved"]}


def phase_old_plan(root: Path) -> dict:
    from megapairs.export import ExportConfig
    from tests.export._reference import reference_plan

    peak, t0 = AnonPeak(), time.perf_counter()
    shards = list(open_complete(root / "corpus").iter_tables(["id", "status", "caption"]))
    pairs = open_complete(root / "pairs").read_all()
    ann = open_complete(root / "annotations").read_all()
    by_split, tasks, images, stats = reference_plan(shards, pairs, ann, ExportConfig(formats=["parquet"]))
    rows = [r for s in by_split.values() for r in s]  # the old plan then built a table per shard from these
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_anon_gib": round(peak.stop(), 2),
            "triplets": len(rows)}


def phase_build(root: Path) -> dict:
    from megapairs.train.data import load_triplets

    peak, t0 = AnonPeak(), time.perf_counter()
    data = load_triplets(root / "dataset" / "_plan" / "triplets.parquet", cache=root / "train_cache" / "train.arrow")
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_anon_gib": round(peak.stop(), 2),
            "rows": len(data)}


def phase_rank(root: Path, rank: int, steps: int, batch: int, old: bool = False) -> dict:
    from megapairs.train.data import StepSampler, TripletDataset, load_triplets

    peak, t0 = AnonPeak(), time.perf_counter()
    src = root / "dataset" / "_plan" / "triplets.parquet"
    if old:
        from tests.train.test_lazy_data import old_load_triplets

        data = old_load_triplets(src)
    else:
        data = load_triplets(src, cache=root / "train_cache" / "train.arrow")
    ready = time.perf_counter() - t0
    ds = TripletDataset(data, num_hard_negatives=4, seed=0, load_images=False)
    sampler = StepSampler(len(ds), batch, seed=0, start_step=0, total_steps=steps, rank=rank, world_size=2)
    t1 = time.perf_counter()
    n = sum(len([ds[k] for k in keys]) for keys in sampler)
    return {"rank": rank, "map_seconds": round(ready, 2), "items": n,
            "items_per_s": round(n / (time.perf_counter() - t1)), "peak_rss_anon_gib": round(peak.stop(), 2)}


def _run(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_export_scale", *args], check=True,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triplets", type=int, default=5_000_000)
    p.add_argument("--images", type=int, default=2_000_000)
    p.add_argument("--out", default="/tmp/s-stream/bench_export")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--compare", action="store_true", help="also run the 0.2 plan and loader (small sizes only)")
    p.add_argument("--phase", choices=["gen", "plan", "old_plan", "build", "rank", "old_rank"], default=None)
    p.add_argument("--rank", type=int, default=0)
    a = p.parse_args()
    root = Path(a.out)
    if a.phase:
        t0 = time.perf_counter()
        if a.phase == "gen":
            root.mkdir(parents=True, exist_ok=True)
            generate(root, a.triplets, a.images)
            res = {"seconds": round(time.perf_counter() - t0, 1)}
        elif a.phase == "plan":
            res = phase_plan(root)
        elif a.phase == "old_plan":
            res = phase_old_plan(root)
        elif a.phase == "build":
            res = phase_build(root)
        else:
            res = phase_rank(root, a.rank, a.steps, a.batch, old=a.phase == "old_rank")
        print(json.dumps(res))
        return

    import shutil

    shutil.rmtree(root, ignore_errors=True)
    common = ["--out", str(root), "--triplets", str(a.triplets), "--images", str(a.images),
              "--steps", str(a.steps), "--batch", str(a.batch)]
    results: dict = {"triplets": a.triplets, "images": a.images}
    results["gen"] = _run([*common, "--phase", "gen"])
    print("gen", results["gen"], flush=True)
    results["plan"] = _run([*common, "--phase", "plan"])
    print("plan", results["plan"], flush=True)
    results["build"] = _run([*common, "--phase", "build"])
    print("build", results["build"], flush=True)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.bench_export_scale", *common, "--phase", "rank",
                               "--rank", str(r)], stdout=subprocess.PIPE, text=True) for r in (0, 1)]
    results["ranks"] = [json.loads(pr.communicate()[0].strip().splitlines()[-1]) for pr in procs]
    results["ranks_wall_s"] = round(time.perf_counter() - t0, 1)
    print("ranks", results["ranks"], flush=True)
    if a.compare:
        results["old_plan"] = _run([*common, "--phase", "old_plan"])
        print("old plan", results["old_plan"], flush=True)
        results["old_rank"] = _run([*common, "--phase", "old_rank"])
        print("old loader (one rank)", results["old_rank"], flush=True)
    ok_plan = results["plan"]["peak_rss_anon_gib"] <= GIB
    ok_train = max(r["peak_rss_anon_gib"] for r in [results["build"], *results["ranks"]]) <= GIB
    print(f"\nplan: {results['plan']['seconds']} s, peak RssAnon {results['plan']['peak_rss_anon_gib']} GiB "
          f"({'<=' if ok_plan else '>'} {GIB} GiB)")
    print(f"train data: build {results['build']['seconds']} s ({results['build']['peak_rss_anon_gib']} GiB); "
          "ranks " + ", ".join(f"{r['map_seconds']} s to map, {r['items_per_s']} items/s, "
                                f"{r['peak_rss_anon_gib']} GiB" for r in results["ranks"])
          + f" ({'<=' if ok_train else '>'} {GIB} GiB)")
    if a.compare:
        op, orank = results["old_plan"], results["old_rank"]
        print(f"0.2 plan: {op['seconds']} s, {op['peak_rss_anon_gib']} GiB -> time ratio old/new "
              f"{op['seconds'] / max(results['plan']['seconds'], 0.1):.1f}, memory ratio "
              f"{op['peak_rss_anon_gib'] / max(results['plan']['peak_rss_anon_gib'], 0.01):.1f}")
        new_ready = results["build"]["seconds"] + results["ranks"][0]["map_seconds"]
        print(f"0.2 loader (one rank): {orank['map_seconds']} s to load, {orank['peak_rss_anon_gib']} GiB -> "
              f"time ratio old/new {orank['map_seconds'] / max(new_ready, 0.01):.1f}, memory ratio "
              f"{orank['peak_rss_anon_gib'] / max(results['ranks'][0]['peak_rss_anon_gib'], 0.01):.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
