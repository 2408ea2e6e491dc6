"""Frozen image-tower outputs, computed once per distinct image per run (offline retriever).

With its towers frozen (the default), `offline:default` trains only small heads, yet the plain path
runs EfficientNet-Lite0 on every query and candidate image at every step (batch 32 with 4 hard
negatives = 192 images per step), which dominates a CPU run. The tower's outputs (pooled features
(1280) + ImageNet logits (1000)) do not depend on the heads, so the trainer computes them once for
every image the run can touch (the training rows' queries, positives and negatives, plus the
held-out rows) and the collator hands them to `forward(image_features=..., image_logits=...)`
instead of pixels. Images are then never decoded during the steps.

Results equal the uncached path up to float rounding of the batched convolutions (tested: the same
loss curve to 1e-5). The cache is used only when the retriever offers `image_feature_key()` and it
is not None (a trained image tower, `train_last_blocks > 0`, switches it off), and only when
`TrainConfig.feature_cache` is true.

Memory: 9.1 kB per image (float32), about 18 MB for 2,000 images. With `feature_cache_dir` set,
the outputs are also kept on disk, in a folder per tower identity (weights file hash +
preprocessing) holding `.npz` parts keyed by the sha256 of each image's bytes, so later runs (and
`encode`, see `OfflineFusionRetriever.feature_cache_dir`) skip the tower for images seen before.
Each addition writes a new part (temporary name, then rename), so concurrent runs do not clash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from megapairs.artifacts import file_mode
from megapairs.models.common import Inputs
from megapairs.progress import Progress

log = logging.getLogger("megapairs")


def ref_key(ref: Any) -> str:
    """In-memory key of an image reference as the triplet rows carry it (path, bytes or HF dict)."""
    if isinstance(ref, (str, Path)):
        return str(ref)
    if isinstance(ref, dict):
        if ref.get("bytes") is not None:
            return ref_key(ref["bytes"])
        return str(ref["path"])
    if isinstance(ref, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(ref).hexdigest()
    raise TypeError(f"cannot cache features of an image given as {type(ref).__name__}")


def content_hash(ref: Any) -> str:
    """sha256 of the image file's bytes: the on-disk key (survives moves and renames)."""
    if isinstance(ref, dict):
        ref = ref["bytes"] if ref.get("bytes") is not None else ref["path"]
    data = bytes(ref) if isinstance(ref, (bytes, bytearray)) else Path(ref).read_bytes()
    return hashlib.sha256(data).hexdigest()


def supports_feature_cache(model: Any) -> bool:
    fn = getattr(model, "image_feature_key", None)
    return callable(fn) and fn() is not None


class ImageFeatureCache:
    """`lookup(refs)` -> {"image_features": (B, 1280), "image_logits": (B, 1000)} for known images;
    `add(model, refs)` computes the missing ones (from `cache_dir` where present there)."""

    def __init__(self, tower_key: str, cache_dir: str | Path | None = None) -> None:
        self.tower_key = tower_key
        self.index: dict[str, int] = {}
        self.feats = torch.zeros(0, 1280)
        self.logits = torch.zeros(0, 1000)
        self.disk: Path | None = None  # a folder of .npz parts, one per `add` that computed something
        self._stored: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # content hash -> outputs
        if cache_dir:
            digest = hashlib.sha256(tower_key.encode()).hexdigest()[:16]
            self.disk = Path(cache_dir) / f"offline-image-features-{digest}"

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, ref: Any) -> bool:
        return ref_key(ref) in self.index

    @classmethod
    def build(cls, model: Any, refs: Iterable[Any], *, cache_dir: str | Path | None = None,
              batch_size: int = 64) -> "ImageFeatureCache":
        """Tower outputs of every distinct image in `refs` (from `cache_dir` where present there)."""
        tower_key = model.image_feature_key()
        if tower_key is None:
            raise ValueError("this retriever's image tower is trained; its outputs cannot be cached")
        cache = cls(tower_key, cache_dir)
        cache.add(model, refs, batch_size=batch_size)
        return cache

    def add(self, model: Any, refs: Iterable[Any], *, batch_size: int = 64, quiet: bool = False) -> int:
        """Make every image in `refs` known; returns how many ran through the tower."""
        if model.image_feature_key() != self.tower_key:
            raise ValueError("the model's image tower is not the one this cache was built for")
        t0 = time.perf_counter()
        new: dict[str, Any] = {}
        for ref in refs:
            k = ref_key(ref)
            if k not in self.index:
                new.setdefault(k, ref)
        if not new:
            return 0
        keys, images = list(new), list(new.values())
        feats = torch.zeros(len(keys), 1280)
        logits = torch.zeros(len(keys), 1000)
        todo = list(range(len(keys)))
        if self.disk is not None:
            hashes = [content_hash(im) for im in images]
            if self._stored is None:
                self._stored = _read_parts(self.disk)
            stored = self._stored
            todo = []
            for i, h in enumerate(hashes):
                if h in stored:
                    feats[i] = torch.from_numpy(stored[h][0])
                    logits[i] = torch.from_numpy(stored[h][1])
                else:
                    todo.append(i)
        if todo:
            was_training = model.training
            model.eval()
            bar = Progress(len(todo), "image features", unit="img", disable=quiet)
            try:  # in chunks, so the bar moves (the tower pass is most of a CPU training run's start)
                outs = []
                for s in range(0, len(todo), batch_size * 4):
                    chunk = todo[s:s + batch_size * 4]
                    outs.append(model.image_tower_outputs([images[i] for i in chunk], batch_size=batch_size))
                    bar.update(len(chunk))
                f, z = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
            finally:
                bar.close()
                model.train(was_training)
            feats[todo], logits[todo] = f, z
            if self.disk is not None:
                part = {hashes[i]: (f[j].numpy(), z[j].numpy()) for j, i in enumerate(todo)}
                _write_part(self.disk, part, self.tower_key)
                stored.update(part)
        base = len(self.index)
        self.index.update({k: base + i for i, k in enumerate(keys)})
        self.feats = torch.cat([self.feats, feats])
        self.logits = torch.cat([self.logits, logits])
        if not quiet:
            log.info("image feature cache: +%d images (%d computed, %d from %s) in %.1f s", len(keys), len(todo),
                     len(keys) - len(todo), self.disk or "memory", time.perf_counter() - t0)
        return len(todo)

    def lookup(self, refs: list[Any]) -> Inputs:
        try:
            idx = torch.tensor([self.index[ref_key(r)] for r in refs], dtype=torch.long)
        except KeyError as e:
            raise KeyError(f"image {e.args[0]!r} is not in the feature cache (built for this run's rows)") from None
        return {"image_features": self.feats[idx], "image_logits": self.logits[idx]}


def _read_parts(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in sorted(folder.glob("part-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            keys, feats, logits = [str(k) for k in z["keys"]], z["feats"], z["logits"]
        out.update({k: (feats[i], logits[i]) for i, k in enumerate(keys)})
    return out


def _write_part(folder: Path, part: dict[str, tuple[np.ndarray, np.ndarray]], tower_key: str) -> None:
    """A new part file, written under a temporary name and renamed: concurrent runs never clash."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(part)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-", suffix=".tmp")
    os.fchmod(fd, file_mode())
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, keys=np.array(keys), tower=np.array(tower_key),
                     feats=np.stack([part[k][0] for k in keys]).astype(np.float32),
                     logits=np.stack([part[k][1] for k in keys]).astype(np.float32))
        os.replace(tmp, folder / f"part-{time.time_ns()}-{os.getpid()}-{Path(tmp).stem[6:]}.npz")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- collation and encoding with cached features ----------------------------------------------------
class CachedTripletCollator:
    """As `TripletCollator`, but images arrive as references (the dataset does not load them) and
    become cached tower outputs; only the instructions go through the processor."""

    def __init__(self, processor, cache: ImageFeatureCache) -> None:
        self.processor = processor
        self.cache = cache

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        from megapairs.train.data import candidate_ids, caption_queries

        group = len(items[0]["candidates"])
        query = self.processor(images=None, texts=[it["text"] for it in items], role="query")
        query.update(self.cache.lookup([it["query_image"] for it in items]))
        cands = self.cache.lookup([c for it in items for c in it["candidates"]])
        return {"query": query, "candidate": cands, "group": group, "rows": [it["row"] for it in items],
                "candidate_ids": candidate_ids(items), **caption_queries(self.processor, items)}  # ids (B*G,)


def encode_cached(model: Any, cache: ImageFeatureCache, images: list | None, texts: list[str] | None,
                  role: str = "query", batch_size: int = 64) -> torch.Tensor:
    """`model.encode_inputs(role, images, texts)` with the images' tower outputs taken from `cache`.
    Call under `inference_mode` / `no_grad` with the model in eval mode."""
    from megapairs.models.common import to_device

    proc = model.processor()
    n = len(images) if images is not None else len(texts or [])
    out = []
    for i in range(0, n, batch_size):
        inputs: Inputs = {}
        if texts is not None:
            inputs.update(proc(images=None, texts=texts[i:i + batch_size], role=role))
        if images is not None:
            inputs.update(cache.lookup(images[i:i + batch_size]))
        out.append(model(**to_device(inputs, model.device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)
