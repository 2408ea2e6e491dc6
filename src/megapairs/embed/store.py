"""Reading the embeddings artifact: ids (N,) and one row-aligned matrix (N, D) per view.

Layout: `part-NNNNN.parquet` (the ids) and `.vectors/<view>/part-NNNNN.npy` (N, D), hidden from
Parquet readers so that the folder reads as a Parquet dataset of ids (megapairs 0.1 wrote
`<view>/part-NNNNN.npy`; those folders still read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megapairs.artifacts import open_complete

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
    art = open_complete(path)
    manifest = art.manifest()
    names = views or list(manifest["views"])
    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {v: [] for v in names}
    for i in range(manifest["num_shards"]):
        ids.extend(art.read_shard(i, columns=["id"]).column("id").to_pylist())
        for v in names:
            parts[v].append(np.load(vector_path(art.path, v, i)))
    mats = {}
    for v in names:
        dim = manifest["views"][v]["dim"]
        mats[v] = np.concatenate(parts[v]).astype(dtype, copy=False) if parts[v] else np.zeros((0, dim), dtype)
    return ids, mats
