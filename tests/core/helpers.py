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


def start_run_until_shards(args: list[str], artifact: Path, shards: int = 2, delay_s: float = 0.4):
    """Start `megapairs <args>` from this checkout's code in a subprocess (each shard slowed by
    `delay_s`) and return it once `artifact` has `shards` finished shards (or after 120 s), still
    running, for the caller to kill."""
    import os
    import subprocess
    import sys
    import time

    from megapairs.artifacts import Artifact

    repo = Path(__file__).parents[2]  # this checkout's code, also in a worktree beside the installed one
    env = dict(os.environ, MEGAPAIRS_SHARD_DELAY_S=str(delay_s), PYTHONPATH=f"{repo / 'src'}{os.pathsep}{repo}")
    proc = subprocess.Popen([sys.executable, "-m", "megapairs.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(Artifact(artifact).done_shards()) < shards:
        time.sleep(0.05)
    return proc
