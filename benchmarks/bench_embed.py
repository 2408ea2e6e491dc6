"""Embed stage throughput against the raw models on pre-decoded tensors, and decode-once
multi-encoder embedding against one pass per encoder. Same models, batch and images, one run.

    python benchmarks/bench_embed.py [--n 256] [--batch 32] [--source demo]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import time_stage_worker
from megapairs.corpus.config import IngestConfig
from megapairs.corpus.images import load_image
from megapairs.corpus.stage import IngestStage
from megapairs.embed.config import EmbedConfig
from megapairs.embed.stage import EmbedStage, Encoders, ok_rows
from megapairs.stages import run_stage


def timed_stage(root: Path, cfg: EmbedConfig) -> float:
    """The stage's steady-state time over all shards (models loaded before the clock starts)."""
    with contextlib.redirect_stderr(io.StringIO()):
        return time_stage_worker(EmbedStage(root, cfg, output=root / f"emb-{time.perf_counter_ns()}"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--source", default="demo")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    root = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    with contextlib.redirect_stderr(io.StringIO()):
        run_stage(IngestStage(root, IngestConfig(source=args.source, limit=args.n, shard_size=64)))
    cfg = EmbedConfig(batch_size=args.batch, device="cpu")
    encoders = Encoders(cfg)  # loads (and caches) the models before any timing
    timed_stage(root, cfg)  # warm-up: first-touch costs, class-text bank

    # Raw: the same encoders on pre-decoded, pre-processed tensors, same batch size.
    from megapairs.artifacts import open_complete

    corpus = open_complete(root / "corpus")
    rows = [r for i in corpus.shard_indices() for r in ok_rows(corpus, i, ["id", "uri", "caption", "image_bytes"]).to_pylist()]
    chunks = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    batches = [(encoders.preprocess([load_image(r) for r in c]), [r["caption"] for r in c]) for c in chunks]
    t0 = time.perf_counter()
    for pixels, captions in batches:
        encoders.encode(pixels, captions)
    raw = time.perf_counter() - t0

    pipeline = timed_stage(root, cfg)
    views = cfg.views()
    per_view = {}
    for v in views:
        one = EmbedConfig(**{k: (views[k] if k == v else "") for k in views}, batch_size=args.batch, device="cpu")
        per_view[v] = timed_stage(root, one)
    n = len(rows)
    print(f"images: {n}, batch {args.batch}, views {views}, torch threads {torch.get_num_threads()}")
    print("| measure | seconds | images/s |")
    print("|---|---|---|")
    print(f"| raw models on pre-decoded tensors | {raw:.2f} | {n / raw:.1f} |")
    print(f"| embed stage (read, decode, preprocess, encode, write; models loaded) | {pipeline:.2f} | {n / pipeline:.1f} |")
    for v, s in per_view.items():
        print(f"| one pass with only `{v}` | {s:.2f} | {n / s:.1f} |")
    print(f"| one pass per encoder, summed | {sum(per_view.values()):.2f} | {n / sum(per_view.values()):.1f} |")
    print(f"\npipeline / raw throughput: {raw / pipeline:.2f} (target >= 0.9)")
    print(f"decode-once multi-encoder speed-up over one pass per encoder: {sum(per_view.values()) / pipeline:.2f}x")


if __name__ == "__main__":
    main()
