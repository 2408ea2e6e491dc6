"""What benchmark modules use to embed and search: batching, progress (tqdm, stderr), gallery cache.

Gallery embeddings are cached as `<cache_dir>/<name>-<key>.npy` with a JSON sidecar. The key
hashes `retriever.preprocess_id` and the ordered list of gallery items (paths, crops, texts); a
cached file is reused only when the sidecar matches both and the row count is right.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from megapairs.artifacts import atomic_write_json, write_npy
from megapairs.evaluate import search as search_mod
from megapairs.evaluate.common import Crop, DataError, EvalOptions, Item
from megapairs.errors import UserError


log = logging.getLogger("megapairs")


def default_cache_dir() -> Path:
    base = os.environ.get("MEGAPAIRS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "megapairs")
    return Path(base) / "evaluate"


def desc_of(chunk: Sequence[Item]) -> str:
    return f"{len(chunk)} inputs starting with {chunk[0].key!r}" if chunk else "no inputs"


def load_crop(path: Path, crop: Crop) -> Image.Image:
    """GeneCIS attribute crop, in the official loader's order (`VAWDataset.load_cropped_image`): grow
    the box by `dilation` of its size up-left, clip to the image, keep a (1 + dilation) x box-sized
    window, then pad to a centred black square, all in the file's own mode (black is (0,) for "L",
    (0, 0, 0) otherwise); the retriever converts to RGB afterwards, as the official transform does."""
    with Image.open(path) as src:
        width, height = src.size
        d = crop.dilation
        left, top = max(0.0, crop.x - d * crop.w), max(0.0, crop.y - d * crop.h)
        right, bottom = min(width, left + (1 + d) * crop.w), min(height, top + (1 + d) * crop.h)
        im = src.crop((left, top, right, bottom))
    if crop.pad_square and im.size[0] != im.size[1]:
        if im.mode not in ("RGB", "L"):
            log.warning("GeneCIS crop of %s (mode %s): padded in that mode as the official loader does, which "
                        "for palette images reinterprets the crop's colour indices", Path(path).name, im.mode)
        side = max(im.size)
        square = Image.new(im.mode, (side, side), (0,) if im.mode == "L" else (0, 0, 0))
        square.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
        im = square
    return im


class Context:
    """Holds the retriever and options for one benchmark run."""

    def __init__(self, retriever: Any, options: EvalOptions, benchmark: str) -> None:
        self.retriever = retriever
        self.options = options
        self.benchmark = benchmark
        self.cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
        self.cache_hits: list[str] = []
        try:  # retrievers that embed candidates differently (MLLM prompts) take role="candidate"
            params = inspect.signature(retriever.encode).parameters
        except (TypeError, ValueError):
            params = {}
        self._role_kw = "role" in params
        self.has_instruction_slot = "instruction" in params  # MLLM: per-row task instruction

    # -- embedding ------------------------------------------------------------------------------
    def encode(self, items: Sequence[Item], desc: str, role: str | None = None) -> np.ndarray:
        """Embed items in batches of one modality each; rows follow `items`. -> (N, D) float32.
        `role="candidate"` is passed on to retrievers whose `encode` accepts a `role` keyword."""
        missing = [it.image for it in items if it.image is not None and not Path(it.image).exists()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"missing image: {missing[0]}{more}")
        out: np.ndarray | None = None
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(it.modality, []).append(i)
        bs = self.options.batch_size
        with tqdm(total=len(items), desc=desc, unit="item", file=sys.stderr, mininterval=2.0,
                  disable=not self.options.progress, dynamic_ncols=True) as bar:
            for modality, rows in groups.items():
                for start in range(0, len(rows), bs):
                    chunk = [items[i] for i in rows[start:start + bs]]
                    emb = self._encode_batch(chunk, modality, role)  # (b, D)
                    if out is None:
                        out = np.zeros((len(items), emb.shape[1]), dtype=np.float32)
                    out[rows[start:start + bs]] = emb
                    bar.update(len(chunk))
        return out if out is not None else np.zeros((0, 1), dtype=np.float32)

    def _encode_batch(self, chunk: list[Item], modality: str, role: str | None) -> np.ndarray:
        images = [load_crop(it.image, it.crop) if it.crop else str(it.image) for it in chunk] \
            if modality != "text" else None
        extra: dict[str, Any] = {"role": role} if role and self._role_kw else {}
        if modality == "image":
            texts = None
        elif self.has_instruction_slot and any(it.instruction for it in chunk):
            texts = [it.text for it in chunk]  # None = no text part in the prompt ("" would add one)
            extra["instruction"] = [it.instruction for it in chunk]
        else:
            texts = [it.full_text or "" for it in chunk]
        with torch.inference_mode():
            emb = self.retriever.encode(images=images, text=texts, **extra)  # (b, D), L2-normalised
        emb = emb.detach().float().cpu().numpy()
        if emb.shape[0] != len(chunk):
            raise UserError(f"retriever {getattr(self.retriever, 'spec', '')} returned {emb.shape[0]} rows for "
                            f"{len(chunk)} inputs; the Retriever protocol gives one vector per input")
        norms = np.linalg.norm(emb, axis=1)
        if not np.all(np.abs(norms - 1.0) <= 1e-2):  # written so that NaN / inf norms fail too
            if not np.all(np.isfinite(emb)):
                raise UserError(f"retriever {getattr(self.retriever, 'spec', '')} returned NaN or infinite "
                                f"embeddings for {desc_of(chunk)}; scores and rankings would be meaningless")
            raise UserError(f"retriever embeddings are not L2-normalised (norms {norms.min():.3f}.."
                            f"{norms.max():.3f}); the Retriever protocol requires unit vectors")
        return emb

    def gallery(self, items: Sequence[Item], name: str) -> np.ndarray:
        """Gallery embeddings (N, D), from the cache when (preprocess_id, item list) match."""
        pid = str(self.retriever.preprocess_id)
        items_hash = hashlib.sha256("\n".join(it.fingerprint() for it in items).encode()).hexdigest()
        key = hashlib.sha256(f"{pid}\ncandidate\n{items_hash}".encode()).hexdigest()[:20]
        npy = self.cache_dir / f"{name}-{key}.npy"
        meta_path = npy.with_suffix(".json")
        if npy.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("preprocess_id") == pid and meta.get("items_hash") == items_hash:
                emb = np.load(npy)
                if emb.shape[0] == len(items) and np.isfinite(emb).all():
                    self.cache_hits.append(name)
                    return emb
                if emb.shape[0] == len(items):  # written before NaN was refused (the old norm check passed it)
                    log.warning("%s: the cached gallery embeddings %s hold NaN or infinite values; encoding "
                                "the gallery again", name, npy)
        emb = self.encode(items, f"{name} gallery", role="candidate")
        write_npy(npy, emb)
        atomic_write_json(meta_path, {"preprocess_id": pid, "items_hash": items_hash, "count": len(items),
                                      "dim": int(emb.shape[1]), "benchmark": self.benchmark})
        return emb

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, gallery: np.ndarray, k: int | None = None,
               exclude: Sequence[int | None] | None = None,
               demote: Sequence[int | None] | None = None) -> list[np.ndarray]:
        return search_mod.search(queries, gallery, k or self.options.topk, exclude, demote=demote)

    def ranked(self, queries: np.ndarray, gallery: np.ndarray, k: int, references: Sequence[int | None],
               policy: str) -> list[np.ndarray]:
        """Top-k per query under a reference policy: keep, remove (`exclude`) or min (`demote`)."""
        if policy == "remove":
            return self.search(queries, gallery, k, exclude=references)
        if policy == "min":
            return self.search(queries, gallery, k, demote=references)
        return self.search(queries, gallery, k)
