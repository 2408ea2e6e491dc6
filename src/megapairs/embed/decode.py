"""Image decoding for the embed stage, on threads or in worker processes.

A worker turns corpus rows into uint8 (H, W, 3) arrays, one per preprocessing geometry (resize +
centre crop); the float conversion and mean/std normalisation happen later, on the model's device
(`Preprocess.normalize`). This module imports no torch, so a spawned worker starts in a fraction of
a second and holds no model.

Modes (`embed.decode_mode`): `threads` (GIL-bound, no start-up cost), `processes` (a bounded pool
of spawned processes: decode scales with cores), `auto` (processes when the encoders run on CUDA,
where decoding is the bottleneck; threads on CPU, where the model is).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from PIL import Image

from megapairs.corpus.images import load_image
from megapairs.errors import RunFailure

if TYPE_CHECKING:
    from megapairs.embed.config import EmbedConfig

log = logging.getLogger("megapairs")

_RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC}


@dataclass(frozen=True)
class Geometry:
    """`shortest_edge` resize then `crop` centre crop (CLIP, DINOv2), or exact `crop` resize (SigLIP),
    as transformers' image processors do."""

    crop: tuple[int, int]  # (height, width)
    shortest_edge: int | None
    resample: int = 3

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (H, W, 3) uint8."""
        if image.mode != "RGB":  # convert() to the same mode copies: ~120 MB for a 40 Mpx photo
            image = image.convert("RGB")
        resample = _RESAMPLE.get(self.resample, Image.BICUBIC)
        ch, cw = self.crop
        if self.shortest_edge is None:
            image = image.resize((cw, ch), resample)
        else:
            # As transformers does: the short side becomes `shortest_edge`, the long side is truncated.
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.shortest_edge * long / short)
            nw, nh = (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)
            if (nw, nh) != (w, h):
                image = image.resize((nw, nh), resample)
            left, top = (nw - cw) // 2, (nh - ch) // 2
            if left < 0 or top < 0:  # smaller than the crop: fall back to a plain resize
                image, left, top = image.resize((cw, ch), resample), 0, 0
            image = image.crop((left, top, left + cw, top + ch))
        return np.asarray(image, dtype=np.uint8)

    @property
    def min_side(self) -> int:
        """The smallest source side this geometry needs before it has to upsample."""
        return self.shortest_edge if self.shortest_edge is not None else max(self.crop)


def draft_side(geometries: dict[str, Geometry]) -> int:
    """The JPEG draft target that loses no resolution for any of the geometries."""
    return max(g.min_side for g in geometries.values())


class DecodeFailed(RunFailure):
    """Decode worker processes kept dying on one batch (after one rebuild of the pool)."""


def decode_rows(rows: list[dict[str, Any]], geometries: dict[str, Geometry],
                draft: int | None = None) -> list[dict[str, np.ndarray]]:
    """Corpus rows -> per row, one uint8 (H, W, 3) array per geometry key. Each image is decoded once;
    `draft` lets JPEGs decode at a reduced DCT scale whose sides stay >= `draft`."""
    out = []
    for row in rows:
        image = load_image(row, draft=draft)
        out.append({key: g(image) for key, g in geometries.items()})
    return out


def _init_worker(parent: int) -> None:
    """Process initialiser: load PIL's format plugins now rather than on the first batch, and exit
    when the parent dies (a SIGKILLed run must not leave decoders blocked on their queue forever)."""
    Image.init()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _ready() -> int:
    return os.getpid()


def auto_workers(mode: str) -> int:
    cores = os.cpu_count() or 2
    # Threads past ~8 only contend for the GIL; processes can use every core but the main one.
    return max(1, min(8 if mode == "threads" else 16, cores - 1))


def make_pool(mode: str, workers: int) -> cf.Executor:
    """A bounded decode pool. Process workers are spawned (never forked from a process that may hold
    CUDA or torch threads) and started before returning, so start-up is not paid on the first batch."""
    if mode == "threads":
        return cf.ThreadPoolExecutor(workers, thread_name_prefix="decode")
    if mode != "processes":
        raise ValueError(f"decode mode must be threads or processes, got {mode!r}")
    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                  initargs=(os.getpid(),))
    try:
        for f in [pool.submit(_ready) for _ in range(workers)]:  # each submit spawns one more process
            f.result()
    except BrokenProcessPool as e:
        # Spawned children re-import the main script; they cannot when it is not a file (`python -`).
        # Threads decode the same pixels, so the vectors do not depend on this.
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("decode processes could not start (%s); decoding on %d threads instead", e, workers)
        return cf.ThreadPoolExecutor(workers, thread_name_prefix="decode")
    return pool


def stack_batches(arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per image {key: (H, W, 3) uint8} -> {key: (B, H, W, 3) uint8}."""
    return {key: np.stack([a[key] for a in arrays]) for key in (arrays[0] if arrays else {})}


class Decoder:
    """Rows -> uint8 batches, decoded by a bounded pool (`embed.decode_mode`) two batches ahead of
    the model. Each batch is split into one part per worker (fewer, larger messages to processes)."""

    def __init__(self, config: "EmbedConfig", geometries: dict[str, Geometry], device: str = "cpu") -> None:
        mode = config.decode_mode
        if mode == "auto":
            mode = "processes" if device.startswith("cuda") else "threads"
        self.mode = mode
        self.workers = config.decode_workers or config.decode_threads or auto_workers(mode)
        self.geometries = geometries
        self.draft = draft_side(geometries) if config.decode_draft and geometries else None
        self.batch_size = config.batch_size
        self.pool = make_pool(mode, self.workers) if geometries else None  # no image view: no decoding
        if isinstance(self.pool, cf.ThreadPoolExecutor):
            self.mode = "threads"  # asked for, or the fallback of a process pool that could not start
        if self.pool is not None:  # end the workers when this decoder goes, not only at exit
            self._finalizer = weakref.finalize(self, self.pool.shutdown, wait=False, cancel_futures=True)

    def close(self) -> None:
        if self.pool is not None:
            self._finalizer()

    def _rebuild(self) -> None:
        """A new process pool in place of a broken one (a worker died: killed for memory, a crash in a
        native decoder); its queued work is lost, the caller resubmits it."""
        self._finalizer.detach()
        assert self.pool is not None
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = make_pool(self.mode, self.workers)
        if isinstance(self.pool, cf.ThreadPoolExecutor):
            self.mode = "threads"  # processes could not start again
        self._finalizer = weakref.finalize(self, self.pool.shutdown, wait=False, cancel_futures=True)

    def _submit(self, chunk: list[dict[str, Any]]) -> list[cf.Future]:
        if self.pool is None:
            return []
        # Only what decoding needs crosses to a process (not ids or captions).
        rows = [{"uri": r["uri"], "image_bytes": r.get("image_bytes")} for r in chunk]
        step = -(-len(rows) // self.workers)
        try:
            return [self.pool.submit(decode_rows, rows[i : i + step], self.geometries, self.draft)
                    for i in range(0, len(rows), step)]
        except BrokenProcessPool as e:  # broken by a batch in flight: this one fails when collected, and
            failed: cf.Future = cf.Future()  # is decoded again there like any batch of a broken pool
            failed.set_exception(e)
            return [failed]

    def _collect(self, futures: list[cf.Future]) -> list[dict[str, np.ndarray]]:
        return [a for f in futures for a in f.result()]

    def batches(self, rows: list[dict[str, Any]]) -> Iterator[tuple[list[dict], dict[str, np.ndarray]]]:
        """(rows of the batch, {key: uint8 (B, H, W, 3)}) in order. When a decode process dies, the pool
        is rebuilt and the batch decoded again, once; a second death on that batch is a RunFailure."""
        bs = self.batch_size
        chunks = [rows[i : i + bs] for i in range(0, len(rows), bs)]
        pending = [self._submit(c) for c in chunks[:2]]
        for j, chunk in enumerate(chunks):
            futures = pending.pop(0)
            try:
                arrays = self._collect(futures)
            except BrokenProcessPool as e:
                arrays = self._retry(chunk, chunks[j + 1 : j + 2], pending, e)
            if j + 2 < len(chunks):
                pending.append(self._submit(chunks[j + 2]))
            yield chunk, stack_batches(arrays)

    def _retry(self, chunk: list[dict[str, Any]], ahead: list[list[dict[str, Any]]], pending: list[list[cf.Future]],
               first: BaseException) -> list[dict[str, np.ndarray]]:
        """Decode `chunk` again on a new pool, alone: the batch queued behind it (`ahead`, lost with
        the old pool, and perhaps the one that killed it) is resubmitted only after, so a second death
        is blamed on the right batch."""
        log.warning("embed: a decode process died (%s); restarting the %d decode processes and decoding "
                    "the batch again", first, self.workers)
        self._rebuild()
        try:
            arrays = self._collect(self._submit(chunk))
            pending[:] = [self._submit(c) for c in ahead]
            return arrays
        except BrokenProcessPool:
            self._rebuild()  # the next shard (after a rerun, or another worker) gets a working pool
            uris = ", ".join(str(r.get("uri", "?"))[:80] for r in chunk[:3]) + (", ..." if len(chunk) > 3 else "")
            raise DecodeFailed(
                f"a decode process died twice on the same batch of {len(chunk)} images ({uris}): an image there "
                "may crash the decoder, or the machine is short of memory",
                hint="lower embed.decode_workers or embed.batch_size, or set embed.decode_mode=threads, or exclude "
                "the image; finished shards are kept, rerun the same command to resume") from None
