"""Trainer throughput against a minimal hand-written PyTorch loop: same model, data pipeline,
batch, loss (InfoNCE, temperature 0.02) and optimizer (AdamW + linear schedule, grad clipping).

Each variant runs in its own process (so peak memory is its own), alternating, `--repeats` times;
the best run of each counts. Throughput is steady state: queries per second from the end of the
first step to the end of the last, data loading included.

    python benchmarks/bench_train.py [--model clip-small|offline:default|clip:FOLDER] [--batch 16]
        [--steps 20] [--workers 1] [--device cpu|cuda] [--repeats 2] [--feature-cache]

The trainer runs with `feature_cache=false`, so both loops do the same work. `--feature-cache`
(offline retriever) adds a third variant, the trainer with its image feature cache on; its
throughput is per step, the one-off cache build (EfficientNet once per distinct image) is timed
separately as `cache_build_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEMPERATURE = 0.02


def peak_memory_mib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hand_loop(args, spec: str, data: Path) -> dict:
    """The reference: a plain loop anyone would write, over the same model and data pipeline."""
    import torch
    import torch.nn.functional as F

    from megapairs.models.base import load_retriever
    from megapairs.train.data import StepSampler, TripletCollator, TripletDataset, load_triplets

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = load_retriever(spec, device=args.device)
    model.to(device).train()
    dataset = TripletDataset(load_triplets(data), num_hard_negatives=args.negatives, seed=0)
    sampler = StepSampler(len(dataset), args.batch, seed=0, start_step=0, total_steps=args.steps)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
                                         collate_fn=TripletCollator(model.processor()), num_workers=args.workers,
                                         pin_memory=device.type == "cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, fused=device.type == "cuda")
    warmup = int(0.05 * args.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (args.steps - s) / (args.steps - warmup)))
    cuda = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    first = last = 0.0
    for i, batch in enumerate(loader):
        q_in = {k: v.to(device, non_blocking=True) for k, v in batch["query"].items()}
        c_in = {k: v.to(device, non_blocking=True) for k, v in batch["candidate"].items()}
        with amp:
            q = model(**q_in)
            c = model(**c_in)
        logits = q.float() @ c.float().T / TEMPERATURE
        loss = F.cross_entropy(logits, torch.arange(q.shape[0], device=device) * batch["group"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda" and (i == 0 or i == args.steps - 1):
            torch.cuda.synchronize()
        if i == 0:
            first = time.perf_counter()
        last = time.perf_counter()
    return {"samples_per_s": args.batch * (args.steps - 1) / (last - first), "final_loss": float(loss.detach())}


def trainer_run(args, spec: str, data: Path, feature_cache: bool = False) -> dict:
    from megapairs.train import feature_cache as fc
    from megapairs.train.config import TrainConfig
    from megapairs.train.trainer import Trainer

    cfg = TrainConfig(model=spec, data=str(data), batch_size=args.batch, max_steps=args.steps, lr=args.lr,
                      num_hard_negatives=args.negatives, num_workers=args.workers, device=args.device,
                      save_every=10**9, log_every=10**9, gradient_checkpointing=False, feature_cache=feature_cache)
    build = fc.ImageFeatureCache.build
    timing = {"cache_build_s": 0.0}

    def timed_build(*a, **kw):
        t0 = time.perf_counter()
        try:
            return build(*a, **kw)
        finally:
            timing["cache_build_s"] += time.perf_counter() - t0

    fc.ImageFeatureCache.build = timed_build  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as out:
            result = Trainer(cfg, out).fit()
    finally:
        fc.ImageFeatureCache.build = build  # type: ignore[method-assign]
    return {"samples_per_s": result.samples_per_s, "final_loss": result.final_loss, **timing}


def cached_run(args, spec: str, data: Path) -> dict:
    return trainer_run(args, spec, data, feature_cache=True)


def prepare(args, root: Path) -> tuple[str, Path]:
    from megapairs.train.synthetic import write_synthetic_triplets

    rows = max(64, args.batch * 4)
    data = write_synthetic_triplets(root / "data", n_images=rows + 8, n_rows=rows, size=(96, 128))
    if args.model == "clip-small":
        from megapairs.models.tiny import make_tiny_clip

        folder = make_tiny_clip(root / "clip-small", hidden=128, layers=4, heads=4, image_size=64, patch=8,
                                projection=64)
        return f"clip:{folder}", data
    return args.model, data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="clip-small", help="clip-small (random, written here) or a retriever spec")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--negatives", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--feature-cache", action="store_true", help="also time the trainer with its feature cache")
    p.add_argument("--variant", choices=["hand", "trainer", "cached"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.variant:  # child process: one measurement, one JSON line
        import logging

        logging.disable(logging.WARNING)
        fn = {"hand": hand_loop, "trainer": trainer_run, "cached": cached_run}[args.variant]
        out = fn(args, args.spec, Path(args.data))
        out["peak_mib"] = peak_memory_mib(args.device)
        print("RESULT " + json.dumps(out))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        spec, data = prepare(args, Path(tmp))
        best: dict[str, dict] = {}
        base = [sys.executable, __file__, "--spec", spec, "--data", str(data)]
        for flag in ("batch", "negatives", "steps", "workers", "lr", "device"):
            base += [f"--{flag}", str(getattr(args, flag))]
        variants = ("hand", "trainer", "cached") if args.feature_cache else ("hand", "trainer")
        for _ in range(args.repeats):
            for variant in variants:
                proc = subprocess.run(base + ["--variant", variant], capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                res = json.loads(lines[-1][len("RESULT "):])
                if variant not in best or res["samples_per_s"] > best[variant]["samples_per_s"]:
                    best[variant] = res
                print(f"  {variant:8s} {res['samples_per_s']:8.2f} queries/s  peak {res['peak_mib']:8.0f} MiB")
    ratio = best["trainer"]["samples_per_s"] / best["hand"]["samples_per_s"]
    cands = args.batch * (1 + args.negatives)
    print(f"\nmodel {spec if args.model != 'clip-small' else 'clip-small (random, hidden 128, 4 layers, 64px)'}; "
          f"{args.batch} queries x {1 + args.negatives} candidates = {cands} images + {args.batch} queries per step; "
          f"{args.steps} steps; device {args.device}; workers {args.workers}")
    print(f"{'variant':10s}{'queries/s':>12s}{'peak MiB':>12s}")
    for v in variants:
        extra = f"   (cache build {best[v]['cache_build_s']:.1f} s)" if v == "cached" else ""
        print(f"{v:10s}{best[v]['samples_per_s']:12.2f}{best[v]['peak_mib']:12.0f}{extra}")
    print(f"ratio trainer / hand = {ratio:.3f} (target >= 0.95)")
    print(json.dumps({"ratio": ratio, **{f"{v}_samples_per_s": best[v]["samples_per_s"] for v in best},
                      **{f"{v}_peak_mib": best[v]["peak_mib"] for v in best}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
