"""The embed stage on CUDA with paper-sized encoders (random-initialised CLIP ViT-L/14 for the image
and caption views, DINOv2-L for the visual view, built from configs: no downloads), against the
raw models on pre-decoded tensors, same batch, same run. Prints JSON and a Markdown table.

It shows whether decoding keeps up with a GPU: the stage decodes (resize + crop to uint8) on a
pool of threads or spawned processes two batches ahead of the model, and normalises on the GPU.
`--decode` lists the pools to time, `MODE:WORKERS[:draft]` (draft: JPEG draft decoding); the
draft runs also report the cosine of their vectors to the full-decode run with the same pool.

    python benchmarks/gpu_embed.py [--n 2048] [--batch 256] [--size 640x480]
        [--decode threads:8,processes:8,processes:15,processes:15:draft]

On a machine without CUDA it prints a message and exits with status 0; `--device cpu --tiny`
runs the whole script on small models to check it.
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


def make_photos(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> None:
    """n JPEGs of `size` (w, h) with random gradients and shapes, each with a caption sidecar."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        a = rng.integers(0, 256, 6)
        img = np.stack([(a[c] + xx * (a[c + 3] - 128) / w) % 256 for c in range(3)], -1).astype(np.uint8)
        im = Image.fromarray(img)
        d = ImageDraw.Draw(im)
        r = min(w, h) // 6
        for _ in range(3):
            x, y = rng.integers(0, w - r), rng.integers(0, h - r)
            d.ellipse((x, y, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        im.save(folder / f"{i:05d}.jpg", quality=90)
        (folder / f"{i:05d}.txt").write_text(f"a synthetic picture number {i} with three round shapes")


def make_models(root: Path, tiny: bool = False) -> tuple[Path, Path]:
    """Paper-sized CLIP-L/14 + DINOv2-L (random init); `tiny`: 2-layer, 64-wide ones (script check)."""
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    from megapairs.models.tiny import tiny_clip_tokenizer

    clip_dir, dino_dir = root / "clip-l14", root / "dinov2-l"
    tok = tiny_clip_tokenizer(77)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    text, vision, dim = (768, 12, 12), (1024, 24, 16), 768  # (hidden, layers, heads)
    if tiny:
        text, vision, dim = (64, 2, 2), (64, 2, 2), 32
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=text[0], intermediate_size=4 * text[0],
                         num_hidden_layers=text[1], num_attention_heads=text[2], max_position_embeddings=77,
                         eos_token_id=eos, pad_token_id=eos, bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>")),
        vision_config=dict(hidden_size=vision[0], intermediate_size=4 * vision[0], num_hidden_layers=vision[1],
                           num_attention_heads=vision[2], image_size=224, patch_size=14),
        projection_dim=dim)
    CLIPModel(cfg).save_pretrained(clip_dir)
    tok.save_pretrained(clip_dir)
    pre = {"crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 224}, "do_center_crop": True,
           "image_mean": [0.481, 0.458, 0.408], "image_std": [0.269, 0.261, 0.276], "resample": 3}
    (clip_dir / "preprocessor_config.json").write_text(json.dumps(pre))
    Dinov2Model(Dinov2Config(hidden_size=vision[0], num_hidden_layers=vision[1], num_attention_heads=vision[2],
                             intermediate_size=4 * vision[0], image_size=224, patch_size=14)).save_pretrained(dino_dir)
    (dino_dir / "preprocessor_config.json").write_text(json.dumps(dict(pre, size={"shortest_edge": 256})))
    return clip_dir, dino_dir


def parse_decode(spec: str) -> list[tuple[str, int, bool]]:
    """`threads:8,processes:15:draft` -> [("threads", 8, False), ("processes", 15, True)]."""
    out = []
    for item in spec.split(","):
        parts = item.split(":")
        out.append((parts[0], int(parts[1]), len(parts) > 2 and parts[2] == "draft"))
    return out


def cosines(a: Path, b: Path, views: list[str]) -> dict[str, dict[str, float]]:
    """Per view, mean and min cosine between the rows of two (unfinalised) embeddings folders."""
    from megapairs.artifacts import Artifact
    from megapairs.embed.store import vector_path

    def read(folder: Path, v: str) -> np.ndarray:
        art = Artifact(folder)
        return np.concatenate([np.load(vector_path(folder, v, i)) for i in art.done_shards()]).astype(np.float32)

    out = {}
    for v in views:
        cos = (read(a, v) * read(b, v)).sum(1)
        out[v] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", default="640x480", help="photo size WxH")
    ap.add_argument("--decode", default="threads:8,processes:8,processes:15,processes:15:draft")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to check the script")
    ap.add_argument("--tiny", action="store_true", help="small random models (to check the script)")
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
    w, h = (int(x) for x in args.size.split("x"))
    make_photos(root / "photos", args.n, size=(w, h))
    clip_dir, dino_dir = make_models(root, tiny=args.tiny)
    with contextlib.redirect_stderr(io.StringIO()):
        run_stage(IngestStage(root, IngestConfig(source=str(root / "photos"), shard_size=512)))
    setup_s = time.perf_counter() - t0

    def cfg(mode: str = "threads", workers: int = 1, draft: bool = False) -> EmbedConfig:
        return EmbedConfig(image=f"hf:{clip_dir}", visual=f"hf:{dino_dir}", caption=f"hf:{clip_dir}",
                           batch_size=args.batch, device=args.device, decode_mode=mode, decode_workers=workers,
                           decode_draft=draft)

    encoders = Encoders(cfg())
    corpus = open_complete(root / "corpus")
    rows = [r for i in corpus.shard_indices() for r in ok_rows(corpus, i, ["id", "uri", "caption", "image_bytes"]).to_pylist()]
    chunks = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    # Raw: the models alone, on batches already decoded, normalised and on the device.
    batches = [(encoders.preprocess([load_image(r) for r in c]), [r["caption"] for r in c]) for c in chunks]
    encoders.encode(*batches[0])  # warm-up (cuBLAS handles, kernels)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for pixels, captions in batches:
        encoders.encode(pixels, captions)
    sync()
    raw = time.perf_counter() - t0
    del batches

    results = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "images": len(rows),
               "batch": args.batch, "size": args.size, "setup_s": round(setup_s, 1), "raw_s": round(raw, 2),
               "raw_img_per_s": round(len(rows) / raw, 1), "cpu_cores": os.cpu_count(), "stage": {}}
    for mode, workers, draft in parse_decode(args.decode):
        name = f"{mode}:{workers}" + (":draft" if draft else "")
        s = time_stage_worker(EmbedStage(root, cfg(mode, workers, draft), output=root / f"emb-{name.replace(':', '-')}"))
        sync()
        r = {"s": round(s, 2), "img_per_s": round(len(rows) / s, 1), "ratio_to_raw": round(raw / s, 3)}
        full = root / f"emb-{mode}-{workers}"
        if draft and full.exists():
            r["cosine_to_full_decode"] = cosines(full, root / f"emb-{name.replace(':', '-')}", ["image", "visual"])
        results["stage"][name] = r
    print(json.dumps(results, indent=2))
    print(f"\n{results['device']}, {len(rows)} images {args.size} JPEG, batch {args.batch}, fp32 (TF32 matmul), "
          f"views: CLIP-L/14 image + CLIP text + DINOv2-L (random init{', tiny' if args.tiny else ''})")
    print("| path | seconds | images/s | / raw |")
    print("|---|---|---|---|")
    print(f"| raw models on pre-decoded tensors | {raw:.2f} | {len(rows) / raw:.0f} | 1.00 |")
    for name, r in results["stage"].items():
        print(f"| embed stage, decode {name} | {r['s']} | {r['img_per_s']:.0f} | {r['ratio_to_raw']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
