"""Reading the embeddings artifact: ids (N,) and one row-aligned matrix (N, D) per view."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megapairs.artifacts import open_complete


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
            parts[v].append(np.load(art.path / v / f"part-{i:05d}.npy"))
    mats = {}
    for v in names:
        dim = manifest["views"][v]["dim"]
        mats[v] = np.concatenate(parts[v]).astype(dtype, copy=False) if parts[v] else np.zeros((0, dim), dtype)
    return ids, mats
