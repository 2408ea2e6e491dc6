"""The embed stage on CUDA with paper-sized encoders (random-initialised CLIP ViT-L/14 for the image
and caption views, DINOv2-L for the visual view, built from configs: no downloads), against the
raw models on pre-decoded tensors, same batch, same run. Prints JSON and a Markdown table.

It shows whether decoding keeps up with a GPU: the stage decodes and preprocesses on
`decode_threads` threads two batches ahead of the model.

    python benchmarks/gpu_embed.py [--n 2048] [--batch 256] [--threads 1,4,8]

On a machine without CUDA it prints a message and exits with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_photos(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of 640x480 with random gradients and shapes, each with a caption sidecar."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        a = rng.integers(0, 256, 6)
        img = np.stack([(a[c] + xx * (a[c + 3] - 128) / 640) % 256 for c in range(3)], -1).astype(np.uint8)
        im = Image.fromarray(img)
        d = ImageDraw.Draw(im)
        for _ in range(3):
            x, y = rng.integers(0, 560), rng.integers(0, 400)
            d.ellipse((x, y, x + 80, y + 80), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        im.save(folder / f"{i:05d}.jpg", quality=90)
        (folder / f"{i:05d}.txt").write_text(f"a synthetic picture number {i} with three round shapes")


def make_models(root: Path) -> tuple[Path, Path]:
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    from megapairs.models.tiny import tiny_clip_tokenizer

    clip_dir, dino_dir = root / "clip-l14", root / "dinov2-l"
    tok = tiny_clip_tokenizer(77)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, eos_token_id=eos, pad_token_id=eos,
                         bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>")),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14),
        projection_dim=768)
    CLIPModel(cfg).save_pretrained(clip_dir)
    tok.save_pretrained(clip_dir)
    pre = {"crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 224}, "do_center_crop": True,
           "image_mean": [0.481, 0.458, 0.408], "image_std": [0.269, 0.261, 0.276], "resample": 3}
    (clip_dir / "preprocessor_config.json").write_text(json.dumps(pre))
    Dinov2Model(Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                             intermediate_size=4096, image_size=224, patch_size=14)).save_pretrained(dino_dir)
    (dino_dir / "preprocessor_config.json").write_text(json.dumps(dict(pre, size={"shortest_edge": 256})))
    return clip_dir, dino_dir


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", default="1,4,8")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to check the script")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_embed: no CUDA device here; nothing to measure")
        return 0
    from megapairs.artifacts import open_complete
    from megapairs.corpus.config import IngestConfig
    from megapairs.corpus.images import load_image
    from megapairs.corpus.stage import IngestStage
    from megapairs.embed.config import EmbedConfig
    from megapairs.embed.stage import EmbedStage, Encoders, ok_rows
    from megapairs.stages import run_stage

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._common import time_stage_worker

    root = Path(tempfile.mkdtemp(prefix="gpu-embed-"))
    t0 = time.perf_counter()
    make_photos(root / "photos", args.n)
    clip_dir, dino_dir = make_models(root)
    with contextlib.redirect_stderr(io.StringIO()):
        run_stage(IngestStage(root, IngestConfig(source=str(root / "photos"), shard_size=512)))
    setup_s = time.perf_counter() - t0

    def cfg(threads: int) -> EmbedConfig:
        return EmbedConfig(image=f"hf:{clip_dir}", visual=f"hf:{dino_dir}", caption=f"hf:{clip_dir}",
                           batch_size=args.batch, device=args.device, decode_threads=threads)

    encoders = Encoders(cfg(1))
    corpus = open_complete(root / "corpus")
    rows = [r for i in corpus.shard_indices() for r in ok_rows(corpus, i, ["id", "uri", "caption", "image_bytes"]).to_pylist()]
    chunks = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    batches = [(encoders.preprocess([load_image(r) for r in c]), [r["caption"] for r in c]) for c in chunks]
    encoders.encode(*batches[0])  # warm-up (cuBLAS handles, kernels)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for pixels, captions in batches:
        encoders.encode(pixels, captions)
    sync()
    raw = time.perf_counter() - t0

    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "images": len(rows), "batch": args.batch,
               "setup_s": round(setup_s, 1), "raw_s": round(raw, 2), "raw_img_per_s": round(len(rows) / raw, 1),
               "cpu_cores": os.cpu_count(), "stage": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        s = time_stage_worker(EmbedStage(root, cfg(threads), output=root / f"emb-{threads}"))
        sync()
        results["stage"][threads] = {"s": round(s, 2), "img_per_s": round(len(rows) / s, 1),
                                     "ratio_to_raw": round(raw / s, 3)}
    print(json.dumps(results, indent=2))
    print(f"\n{results['device']}, {len(rows)} images 640x480 JPEG, batch {args.batch}, fp32 (TF32 matmul), "
          f"views: CLIP-L/14 image + CLIP text + DINOv2-L (random init)")
    print("| path | seconds | images/s | / raw |")
    print("|---|---|---|---|")
    print(f"| raw models on pre-decoded tensors | {raw:.2f} | {len(rows) / raw:.0f} | 1.00 |")
    for threads, r in results["stage"].items():
        print(f"| embed stage, {threads} decode threads | {r['s']} | {r['img_per_s']:.0f} | "
              f"{r['ratio_to_raw']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
