"""Comparing artifacts by content (not timestamps)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

VOLATILE = {"finished", "started", "wall_s"}


def fingerprint(folder: Path) -> dict[str, str]:
    """file -> content digest for every shard and the manifest (volatile fields removed)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name == "_lineage.json":
            continue
        rel = str(p.relative_to(folder))
        if p.suffix == ".parquet":
            data = json.dumps(pq.read_table(p).to_pylist(), default=lambda b: hashlib.sha256(b).hexdigest())
        elif p.suffix == ".npy":
            data = np.load(p).tobytes().hex()
        elif p.suffix in (".json", ".done"):
            obj = json.loads(p.read_text())
            data = json.dumps({k: v for k, v in obj.items() if k not in VOLATILE}, sort_keys=True)
        else:
            data = p.read_bytes().hex()
        out[rel] = hashlib.sha256(data.encode()).hexdigest()
    return out


def run_fingerprint(root: Path, names=("corpus", "embeddings", "pairs")) -> dict[str, dict[str, str]]:
    return {n: fingerprint(root / n) for n in names}
