"""One contrastive training step of a random-initialised ViT-B/16 CLIP (the BGE-VL-base shape) on
CUDA with bf16 autocast: throughput (queries/s), step time and peak GPU memory, as JSON.

Measured through megapairs' own `StepRunner` (the trainer's step) in three settings, plus a
hand-written PyTorch step on the plain setting for comparison:

- plain:      B queries x (1 positive + 4 hard negatives), everything in one graph
- ckpt:       the same with activation checkpointing (larger B)
- grad_cache: GradCache in chunks (B = 1024, the paper's order of magnitude per GPU)

Inputs are synthetic tensors already on the GPU (224x224 pixels, 32-token texts), so the numbers
are the model step alone; data loading is measured by bench_train.py. On a machine without CUDA
the script prints a message and exits with status 0.

    python benchmarks/gpu_train_step.py [--steps 8] [--warmup 3] [--only plain,ckpt,grad_cache]
    python benchmarks/gpu_train_step.py --trainer   # the whole Trainer on CUDA, tiny models, 4 recipes
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

NEGATIVES = 4
TEXT_LEN = 32
SETTINGS = {  # name: (queries per step, grad-cache chunk, activation checkpointing)
    "plain": (128, 0, False),
    "ckpt": (256, 0, True),
    "grad_cache": (1024, 256, False),
}


def vit_b16_clip(tiny: bool = False):
    from transformers import CLIPConfig, CLIPModel

    if tiny:  # a CPU dry run of the script's code paths (--dry-run)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      image_size=32, patch_size=16)
        return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    text = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                num_attention_heads=8, max_position_embeddings=77, eos_token_id=49407)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=224, patch_size=16)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512))


def make_retriever(device, tiny: bool):
    import torch

    from megapairs.embed.backends.preprocess import Preprocess
    from megapairs.models.clip_fusion import ClipFusionRetriever

    torch.manual_seed(0)
    with torch.device(device):
        model = vit_b16_clip(tiny)
    side = model.config.vision_config.image_size
    pre = Preprocess(crop=(side, side), shortest_edge=side, mean=(0.5,) * 3, std=(0.5,) * 3)
    return ClipFusionRetriever(model, tokenizer=None, preprocess=pre, spec="clip:random-vit-b16").train()


def synthetic_batch(model, queries: int, device):
    import torch

    side = model.model.config.vision_config.image_size
    vocab = model.model.config.text_config.vocab_size
    eos = model.model.config.text_config.eos_token_id
    g = torch.Generator(device=device).manual_seed(0)
    ids = torch.randint(0, vocab - 2, (queries, TEXT_LEN), device=device, generator=g)
    ids[:, -1] = eos if eos < vocab else vocab - 1
    return {
        "query": {"pixel_values": torch.randn(queries, 3, side, side, device=device, generator=g),
                  "input_ids": ids, "attention_mask": torch.ones_like(ids)},
        "candidate": {"pixel_values": torch.randn(queries * (1 + NEGATIVES), 3, side, side, device=device,
                                                  generator=g)},
    }


def run_setting(name: str, queries: int, chunk: int, ckpt: bool, args, device) -> dict:
    from megapairs.models.common import set_activation_checkpointing
    from megapairs.train.step import StepRunner

    model = make_retriever(device, args.dry_run)
    set_activation_checkpointing(model.model, ckpt)
    cfg = SimpleNamespace(lr=5e-6, weight_decay=0.01, warmup_ratio=0.0, amp="bf16" if device.type == "cuda" else "no",
                          temperature=0.02, gather_across_devices=False, grad_cache_chunk=chunk, max_grad_norm=1.0)
    runner = StepRunner(model, cfg, total_steps=10**6, device=device)
    batch = synthetic_batch(model, queries, device)
    return timed(name, lambda: runner.step(batch), queries, args, device,
                 extra={"grad_cache_chunk": chunk, "activation_checkpointing": ckpt})


def run_hand_written(queries: int, args, device) -> dict:
    """The reference step anyone would write: same model, batch, loss and optimizer."""
    import torch
    import torch.nn.functional as F

    model = make_retriever(device, args.dry_run)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01, fused=device.type == "cuda")
    batch = synthetic_batch(model, queries, device)
    targets = torch.arange(queries, device=device) * (1 + NEGATIVES)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            q = model(**batch["query"])
            c = model(**batch["candidate"])
        loss = F.cross_entropy(q.float() @ c.float().T / 0.02, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return timed("hand_written_plain", step, queries, args, device, extra={})


def timed(name, step, queries, args, device, extra) -> dict:
    import torch

    cuda = device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(args.warmup):
            loss = step()
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        if cuda:
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - t0) / args.steps
    except torch.cuda.OutOfMemoryError as e:
        return {"setting": name, "queries": queries, "error": f"out of memory: {str(e)[:120]}", **extra}
    images = queries * (2 + NEGATIVES)  # query image + positive + negatives
    out = {
        "setting": name, "queries": queries, "images_per_step": images, "step_s": round(seconds, 4),
        "queries_per_s": round(queries / seconds, 1), "images_per_s": round(images / seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "loss": round(float(loss), 4), **extra,
    }
    print(json.dumps(out), flush=True)
    return out


def trainer_smoke(device) -> list[dict]:
    """The full `Trainer` on CUDA with tiny random models and synthetic triplets: bf16 autocast,
    activation checkpointing, grad cache and LoRA (CLIP and LLaVA-NeXT). Checks that each recipe
    runs, that grad cache leaves the loss curve unchanged, and that the saved folders load."""
    import tempfile
    from pathlib import Path

    from megapairs.models.base import load_retriever
    from megapairs.models.tiny import make_tiny_clip, make_tiny_llava
    from megapairs.train.config import TrainConfig
    from megapairs.train.synthetic import write_synthetic_triplets
    from megapairs.train.trainer import Trainer

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_synthetic_triplets(root / "data", n_images=80, n_rows=64, size=(96, 128))
        clip = make_tiny_clip(root / "clip", hidden=64, layers=2, image_size=64, patch=8, projection=32)
        llava = make_tiny_llava(root / "llava")
        recipes = {
            "clip_bf16_ckpt": dict(model=f"clip:{clip}"),
            "clip_bf16_ckpt_gradcache": dict(model=f"clip:{clip}", grad_cache_chunk=24),
            "clip_lora_gradcache": dict(model=f"clip:{clip}", lora_r=8, grad_cache_chunk=24, lr=1e-3),
            "mllm_lora_gradcache_ckpt": dict(model=f"mllm:{llava}", lora_r=8, grad_cache_chunk=24, lr=1e-3,
                                             batch_size=8),
        }
        for name, extra in recipes.items():
            base = dict(data=str(data), batch_size=16, max_steps=6, lr=1e-4, device=str(device), num_workers=4,
                        save_every=3, log_every=1, seed=0)
            cfg = TrainConfig(**{**base, **extra})
            t0 = time.perf_counter()
            res = Trainer(cfg, root / name).fit()
            model = load_retriever(f"ckpt:{root / name}", device=str(device))
            emb = model.encode(images=str(data.parent / "images" / "0000.png"), text="make it red")
            row = {"recipe": name, "seconds": round(time.perf_counter() - t0, 1),
                   "amp": cfg.resolve(model.kind, device.type).amp,
                   "losses": [round(v, 4) for _, v in res.history], "queries_per_s": round(res.samples_per_s, 1),
                   "embedding_norm": round(float(emb.norm()), 4)}
            print(json.dumps(row), flush=True)
            out.append(row)
    a, b = out[0]["losses"], out[1]["losses"]
    same = max(abs(x - y) for x, y in zip(a, b))
    print(json.dumps({"grad_cache_vs_plain_max_loss_diff": round(same, 5)}), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--only", default=",".join(SETTINGS), help="comma-separated settings")
    p.add_argument("--dry-run", action="store_true", help="tiny model on CPU: check the script, measure nothing")
    p.add_argument("--trainer", action="store_true", help="run the whole Trainer on tiny models (recipes smoke)")
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print("gpu_train_step: no CUDA device here; this benchmark needs an NVIDIA GPU (nothing measured).")
        return 0
    device = torch.device("cuda", 0) if torch.cuda.is_available() and not args.dry_run else torch.device("cpu")
    if args.trainer:
        trainer_smoke(device)
        return 0
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sizes = {k: ((4, 2 if v[1] else 0, v[2]) if args.dry_run else v) for k, v in SETTINGS.items()}
    results = []
    for name in args.only.split(","):
        queries, chunk, ckpt = sizes[name]
        results.append(run_setting(name, queries, chunk, ckpt, args, device))
        if name == "plain":
            ref = run_hand_written(queries, args, device)
            results.append(ref)
            if "queries_per_s" in ref and "queries_per_s" in results[-2]:
                ratio = results[-2]["queries_per_s"] / ref["queries_per_s"]
                print(json.dumps({"ratio_megapairs_vs_hand_written_plain": round(ratio, 3)}), flush=True)
    import transformers

    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "model": "CLIP ViT-B/16 + 12-layer text tower, random init, bf16 autocast, AdamW",
        "candidates_per_query": 1 + NEGATIVES, "text_tokens": TEXT_LEN, "results": results,
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
