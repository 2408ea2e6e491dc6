"""Search benchmark: GalleryIndex overhead over bare FAISS, and index-building throughput.

1. Search: a synthetic gallery of clustered unit vectors (default 100k x 512) is written as an index
   folder (float16 embeddings + items table) and searched through `GalleryIndex.search(vectors=...)`
   (query encoding excluded) and through a bare FAISS index holding the same vectors, interleaved
   in the same run. Reports latency p50/p99 of single queries, queries/s for batches, and the
   overhead ratio (target <= 1.2x). Flat by default, plus IVF (`--no-ivf` to skip).
2. Embedding: a small gallery of JPEG files is indexed with `GalleryIndex.build` and compared with
   the raw model on pre-decoded, preprocessed tensors, and with `retriever.encode` on decoded images.
   The default model is a randomly initialised CLIP ViT-B/32 (the architecture and cost of
   openai/clip-vit-base-patch32; no weights needed); `--model SPEC` uses a registered retriever.

    python benchmarks/bench_search.py                 # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_search.py --n 20000 --embed-images 32 --embed-model tiny   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# -- search -----------------------------------------------------------------------------------------
def clustered(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def time_single(fn_a, fn_b, queries: np.ndarray, k: int) -> tuple[list[float], list[float]]:
    """Per-query latency (ms) of two search functions, interleaved so machine noise hits both alike."""
    a, b = [], []
    for i in range(len(queries)):
        q = queries[i : i + 1]
        first, second, ta, tb = (fn_a, fn_b, a, b) if i % 2 == 0 else (fn_b, fn_a, b, a)
        t0 = time.perf_counter()
        first(q, k)
        t1 = time.perf_counter()
        second(q, k)
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1e3)
        tb.append((t2 - t1) * 1e3)
    return a, b


def time_batches(fn_a, fn_b, queries: np.ndarray, k: int, batch: int, repeats: int = 3) -> tuple[float, float]:
    """Best-of-`repeats` queries/s over all queries in batches, for two functions run in turns."""
    best = [0.0, 0.0]
    for r in range(repeats):
        for j in ((0, 1) if r % 2 == 0 else (1, 0)):
            fn = (fn_a, fn_b)[j]
            t0 = time.perf_counter()
            for i in range(0, len(queries), batch):
                fn(queries[i : i + batch], k)
            best[j] = max(best[j], len(queries) / (time.perf_counter() - t0))
    return best[0], best[1]


def bench_search(args, workdir: Path) -> list[dict]:
    import faiss

    from megapairs.search import GalleryIndex, IndexOptions

    print(f"# search: {args.n:,} x {args.dim} clustered vectors, {args.queries} queries, k={args.k}",
          file=sys.stderr)
    x = clustered(args.n, args.dim, args.centres, seed=0)
    queries = clustered(args.queries, args.dim, args.centres, seed=1)
    ids = [f"{i:032x}" for i in range(args.n)]
    paths = [f"/gallery/{i:07d}.jpg" for i in range(args.n)]
    kinds = [("flat", IndexOptions(kind="flat"))]
    if args.ivf:
        kinds.append(("ivf", IndexOptions(kind="ivf", nprobe=args.nprobe)))
    rows = []
    flat_truth = None
    for name, options in kinds:
        folder = workdir / f"index-{name}"
        t0 = time.perf_counter()
        GalleryIndex.from_vectors(folder, x, ids, paths, spec="synthetic:clustered", preprocess_id="synthetic",
                                  options=options)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        idx = GalleryIndex.load(folder)
        load_s = time.perf_counter() - t0
        # the bare baseline: the same stored (float16) vectors in a plain FAISS index
        if name == "flat":
            bare = faiss.IndexFlatIP(args.dim)
            bare.add(np.load(folder / "embeddings.npy").astype(np.float32))
        else:
            bare = faiss.read_index(str(folder / "faiss.index"))
            faiss.extract_index_ivf(bare).nprobe = args.nprobe

        def ours(q, k, idx=idx):
            return idx.search(vectors=q, k=k)

        def theirs(q, k, bare=bare):
            return bare.search(q, k)

        for i in range(min(20, len(queries))):  # warm up
            ours(queries[i : i + 1], args.k)
            theirs(queries[i : i + 1], args.k)
        lat_ours, lat_bare = time_single(ours, theirs, queries, args.k)
        qps_ours, qps_bare = time_batches(ours, theirs, queries, args.k, args.batch, args.batch_repeats)
        # correctness: the same neighbours as the bare index
        ours_ids = [[int(h.id, 16) for h in row] for row in ours(queries, args.k)]
        _, bare_ids = theirs(queries, args.k)
        same = float(np.mean([a == b.tolist() for a, b in zip(ours_ids, bare_ids)]))
        recall = None
        if name == "flat":
            flat_truth = bare_ids
        elif flat_truth is not None:
            recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(bare_ids, flat_truth)]))
        factory = idx.meta["faiss"]["factory"] + (f" nprobe={args.nprobe}" if name == "ivf" else "")
        p50o, p50b = statistics.median(lat_ours), statistics.median(lat_bare)
        rows.append({
            "index": factory, "build_s": build_s, "load_s": load_s,
            "p50_ours": p50o, "p99_ours": percentile(lat_ours, 99), "p50_bare": p50b, "p99_bare": percentile(lat_bare, 99),
            "qps1_ours": 1e3 / statistics.mean(lat_ours), "qps1_bare": 1e3 / statistics.mean(lat_bare),
            "qpsb_ours": qps_ours, "qpsb_bare": qps_bare,
            "ratio_p50": p50o / p50b, "ratio_batch": qps_bare / qps_ours, "same": same, "recall": recall,
        })
        print(f"  {factory}: done", file=sys.stderr)
    return rows


# -- embedding --------------------------------------------------------------------------------------
class BenchClip:
    """A randomly initialised CLIP behind the Retriever protocol (image side is what is measured)."""

    def __init__(self, size: str) -> None:
        import torch
        from transformers import CLIPConfig, CLIPModel

        from megapairs.embed.backends.preprocess import Preprocess

        torch.manual_seed(0)
        if size == "b32":  # transformers' CLIPConfig defaults = openai/clip-vit-base-patch32
            cfg = CLIPConfig()
            image = 224
        else:
            cfg = CLIPConfig(text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                              num_attention_heads=2),
                             vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                num_attention_heads=2, image_size=64, patch_size=16),
                             projection_dim=64)
            image = 64
        self.model = CLIPModel(cfg).eval()
        self.pre = Preprocess(crop=(image, image), shortest_edge=image, mean=(0.481, 0.458, 0.408),
                              std=(0.269, 0.261, 0.276))
        self.spec = f"bench-clip:{size}"
        self.size = size

    @property
    def preprocess_id(self) -> str:
        return f"bench-clip-{self.size}-seed0-{self.pre.key}"

    def pixels(self, images) -> "torch.Tensor":
        import torch
        from PIL import Image

        arrays = [self.pre(im if isinstance(im, Image.Image) else Image.open(im).convert("RGB")) for im in images]
        return torch.from_numpy(np.stack(arrays))  # (B, 3, H, W)

    def forward(self, pixels):
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            return F.normalize(out.float(), dim=-1)  # (B, D)

    def encode(self, images=None, text=None):
        if images is None or text is not None:
            raise NotImplementedError("the benchmark retriever embeds images only")
        images = [images] if not isinstance(images, (list, tuple)) else images
        return self.forward(self.pixels(images))


def make_jpegs(folder: Path, n: int, size=(640, 480)) -> list[Path]:
    """Photo-sized JPEGs with smooth structure plus noise (decode cost like real photos)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        f = rng.uniform(0.005, 0.03, 3)
        base = np.stack([127 + 100 * np.sin(xx * f[c] + yy * f[(c + 1) % 3] + i) for c in range(3)], axis=-1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        p = folder / f"photo{i:05d}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(p)
    return paths


def bench_embed(args, workdir: Path) -> list[dict]:
    from PIL import Image

    from megapairs.search import GalleryIndex

    print(f"# embed: {args.embed_images} JPEGs 640x480, batch {args.embed_batch}", file=sys.stderr)
    paths = make_jpegs(workdir / "photos", args.embed_images)
    if args.model:
        from megapairs.models.base import load_retriever

        retriever, raw = load_retriever(args.model), None
    else:
        retriever = BenchClip(args.embed_model)
        raw = retriever
    decoded = [Image.open(p).convert("RGB") for p in paths]
    batches = [decoded[i : i + args.embed_batch] for i in range(0, len(decoded), args.embed_batch)]
    retriever.encode(images=batches[0][:2])  # warm up
    runs: dict[str, list[float]] = {}

    def timed(name: str, fn) -> None:
        t0 = time.perf_counter()
        fn()
        runs.setdefault(name, []).append(time.perf_counter() - t0)

    def build(rep: int) -> None:
        GalleryIndex.build(workdir / "photos", retriever, workdir / f"photo-index-{rep}",
                           batch_size=args.embed_batch, progress=False)

    tensors = [raw.pixels(b) for b in batches] if raw is not None else []
    for rep in range(args.embed_repeats):  # the paths take turns, so machine noise hits all of them
        if raw is not None:
            timed("model forward on preprocessed tensors", lambda: [raw.forward(t) for t in tensors])
        timed("retriever.encode on decoded PIL images", lambda: [retriever.encode(images=b) for b in batches])
        timed("GalleryIndex.build from JPEG files", lambda: build(rep))
    base = min(next(iter(runs.values())))
    rows = []
    for name, times in runs.items():
        rows.append({"what": name, "s": min(times), "median_s": statistics.median(times),
                     "img_s": args.embed_images / min(times), "ratio": min(times) / base})
    return rows


# -- report -----------------------------------------------------------------------------------------
def report(search_rows: list[dict], embed_rows: list[dict], args) -> str:
    import faiss
    import torch

    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
             f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), torch {torch.__version__} "
             f"({torch.get_num_threads()} threads); load average at the end "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.", ""]
    if search_rows:
        lines += [f"Search: {args.n:,} x {args.dim} float16 vectors (clustered, {args.centres} centres), "
                  f"{args.queries} queries, k={args.k}; single queries interleaved (p50/p99, q/s = 1/mean), "
                  f"batches of {args.batch} (best of {args.batch_repeats} turns).", "",
                  "| index | GalleryIndex p50 / p99 (ms) | bare FAISS p50 / p99 (ms) | overhead p50 | "
                  f"GalleryIndex q/s (1 / {args.batch}) | bare FAISS q/s (1 / {args.batch}) | overhead batch | "
                  "same results | recall@k vs flat |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in search_rows:
            recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
            lines.append(
                f"| {r['index']} | {r['p50_ours']:.2f} / {r['p99_ours']:.2f} | {r['p50_bare']:.2f} / "
                f"{r['p99_bare']:.2f} | {r['ratio_p50']:.3f}x | {r['qps1_ours']:.0f} / {r['qpsb_ours']:.0f} | "
                f"{r['qps1_bare']:.0f} / {r['qpsb_bare']:.0f} | {r['ratio_batch']:.3f}x | {r['same']:.0%} | {recall} |")
        lines += ["", "| index | write index folder (s) | load (s) |", "|---|---|---|"]
        for r in search_rows:
            lines.append(f"| {r['index']} | {r['build_s']:.2f} | {r['load_s']:.2f} |")
    if embed_rows:
        model = args.model or ("random CLIP ViT-B/32" if args.embed_model == "b32" else "tiny random CLIP")
        lines += ["", f"Embedding {args.embed_images} JPEGs (640x480) with {model}, batch {args.embed_batch}, "
                      f"best of {args.embed_repeats} interleaved runs:", "",
                  "| path | best (s) | median (s) | images/s (best) | best vs first row |", "|---|---|---|---|---|"]
        for r in embed_rows:
            lines.append(f"| {r['what']} | {r['s']:.2f} | {r['median_s']:.2f} | {r['img_s']:.1f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="gallery vectors")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--centres", type=int, default=1000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--batch", type=int, default=64, help="queries per batch for the throughput column")
    p.add_argument("--batch-repeats", type=int, default=5, help="best-of runs for the batch column")
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--no-ivf", dest="ivf", action="store_false", help="skip the IVF rows")
    p.add_argument("--embed-images", type=int, default=96)
    p.add_argument("--embed-repeats", type=int, default=3)
    p.add_argument("--embed-batch", type=int, default=32)
    p.add_argument("--embed-model", choices=["b32", "tiny"], default="b32")
    p.add_argument("--model", default=None, help="a registered retriever spec for the embedding part")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--workdir", default=None, help="keep the index folders here (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        search_rows = [] if args.skip_search else bench_search(args, workdir)
        embed_rows = [] if args.skip_embed else bench_embed(args, workdir)
    print(report(search_rows, embed_rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
