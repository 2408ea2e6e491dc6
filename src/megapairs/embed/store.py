"""Reading the embeddings artifact: ids (N,) and one row-aligned matrix (N, D) per view.

Layout: `part-NNNNN.parquet` (the ids) and `.vectors/<view>/part-NNNNN.npy` (N, D), hidden from
Parquet readers so that the folder reads as a Parquet dataset of ids (megapairs 0.1 wrote
`<view>/part-NNNNN.npy`; those folders still read).

`open_embeddings` memory-maps the per-shard float16 `.npy` files: a view is a `Vectors` object
that reads rows on demand and hands out float32 blocks, so no process holds a float32 (or even a
float16) copy of a whole view; the OS page cache is shared by every process on the machine.
`load_embeddings` is the small-data convenience that materialises everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from megapairs.artifacts import Artifact, open_complete


class Vectors:
    """One view as a row-aligned (N, D) matrix over memory-mapped shards (float16 on disk).

    Indexing with an int array or slice returns a float32 copy of just those rows, so code written
    for an in-memory float32 matrix (`m[rows]`, `len(m)`, `m.shape`) works unchanged."""

    def __init__(self, parts: list[np.ndarray], dim: int) -> None:
        self.parts = [p for p in parts if len(p)]
        self.dim = dim
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])  # (S+1,)
        self.dtype = self.parts[0].dtype if self.parts else np.dtype(np.float16)

    @classmethod
    def from_array(cls, x: np.ndarray) -> "Vectors":
        return cls([np.asarray(x)], int(np.shape(x)[1]))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    @property
    def nbytes(self) -> int:
        return len(self) * self.dim * self.dtype.itemsize

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step == 1:
                return self.block(start, stop)
            rows = np.arange(start, stop, step)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim == 0:
            return self[rows[None]][0]
        # Gather in float16, then one conversion: numpy's casting assignment is ~2.5x slower.
        if len(self.parts) == 1:
            return f16_to_f32(self.parts[0][rows])
        buf = np.empty((len(rows), self.dim), self.dtype)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            buf[sel] = self.parts[s][rows[sel] - self.offsets[s]]
        return f16_to_f32(buf)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as one contiguous float32 array (D, ) per row."""
        out = np.empty((max(0, stop - start), self.dim), self.dtype)
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        pos = start
        for s in range(max(first, 0), len(self.parts)):
            lo, hi = self.offsets[s], self.offsets[s + 1]
            if pos >= stop:
                break
            end = min(stop, hi)
            out[pos - start : end - start] = self.parts[s][pos - lo : end - lo]
            pos = end
        return f16_to_f32(out)

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start row, float32 block of up to `size` rows), in row order."""
        for start in range(0, len(self), size):
            yield start, self.block(start, min(len(self), start + size))


# elements per conversion step: below torch's parallel grain (32,768), so every step runs on the
# calling thread; one parallel copy of 655k elements took 6-23 ms instead of 0.1 ms on this
# loaded 2-core machine (its threads contend with FAISS's)
F16_CHUNK = 1 << 15


def f16_to_f32(x: np.ndarray) -> np.ndarray:
    """`x.astype(np.float32)`, ~10x faster for float16: numpy's float16 cast is scalar code (1.6-2 ns
    per element here; the pair selection converts ~50 rows per query), torch's copy uses the
    CPU's F16C conversion (~0.15 ns). Bit for bit `astype` for every finite float16 and the
    infinities; a NaN stays a NaN (its payload and sign are not kept: F16C quiets signalling ones)."""
    if x.dtype != np.float16:
        return x.astype(np.float32, copy=False)
    import torch  # a core dependency; imported on the first read (about 1 s)

    src = torch.from_numpy(np.ascontiguousarray(x).reshape(-1))
    out = np.empty(src.numel(), np.float32)
    dst = torch.from_numpy(out)
    for i in range(0, len(out), F16_CHUNK):
        dst[i : i + F16_CHUNK].copy_(src[i : i + F16_CHUNK])
    return out.reshape(x.shape)


def _view_parts(art: Artifact, manifest: dict, view: str, mmap: bool) -> list[np.ndarray]:
    return [np.load(vector_path(art.path, view, i), mmap_mode="r" if mmap else None)
            for i in range(manifest["num_shards"])]


def read_ids(path: Path | str) -> np.ndarray:
    """All image ids in row order, as a numpy object array (N,)."""
    art = open_complete(path)
    ids = [art.read_shard(i, columns=["id"]).column("id").to_numpy(zero_copy_only=False)
           for i in range(art.manifest()["num_shards"])]
    return np.concatenate(ids).astype(object) if ids else np.zeros(0, object)


def open_views(path: Path | str, views: list[str] | None = None) -> dict[str, Vectors]:
    """One memory-mapped `Vectors` per view; nothing is copied into memory."""
    art = open_complete(path)
    manifest = art.manifest()
    names = views or list(manifest["views"])
    return {v: Vectors(_view_parts(art, manifest, v, mmap=True), manifest["views"][v]["dim"]) for v in names}


def open_embeddings(path: Path | str, views: list[str] | None = None) -> tuple[np.ndarray, dict[str, Vectors]]:
    """ids (N,) as an object array and one memory-mapped `Vectors` per view."""
    return read_ids(path), open_views(path, views)

VECTORS_DIR = ".vectors"


def vector_relpath(view: str, index: int) -> str:
    return f"{VECTORS_DIR}/{view}/part-{index:05d}.npy"


def vector_path(folder: Path, view: str, index: int) -> Path:
    """The (N, D) matrix of shard `index` in `view` (the 0.1 location if that is where it is)."""
    path = Path(folder) / vector_relpath(view, index)
    legacy = Path(folder) / view / f"part-{index:05d}.npy"
    return legacy if not path.exists() and legacy.exists() else path


def load_embeddings(path: Path | str, views: list[str] | None = None,
                    dtype=np.float32) -> tuple[list[str], dict[str, np.ndarray]]:
    """ids and in-memory matrices: for small data and tests (use `open_embeddings` at scale)."""
    art = open_complete(path)
    manifest = art.manifest()
    names = views or list(manifest["views"])
    mats = {}
    for v in names:
        parts = _view_parts(art, manifest, v, mmap=False)
        dim = manifest["views"][v]["dim"]
        mats[v] = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros((0, dim), dtype)
    return read_ids(path).tolist(), mats
