"""Artifacts on disk: a folder of shards, one completion marker per shard, and a manifest.

Layout of an artifact folder::

    <artifact>/
      _lineage.json          # written when the first shard starts: config hash + upstream hashes
      part-00000.parquet     # a shard (extra files of the same shard may sit beside it, e.g. .npy)
      part-00000.done        # completion marker: JSON with row count and the file names it covers
      manifest.json          # written last, by finalize: schema, counts, config hash, models, stats

A shard counts as done only when its marker exists. Writers write to a temporary name and rename,
so a crash leaves either nothing or a finished file, never a half-written one that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from megapairs import __version__
from megapairs.errors import UserError

MANIFEST = "manifest.json"
LINEAGE = "_lineage.json"


class ArtifactError(UserError, RuntimeError):
    """An artifact is missing, incomplete, or was made by a different configuration."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_table(path: Path, table: pa.Table) -> None:
    """Write a Parquet file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write a .npy file atomically (row-aligned embeddings, readable by numpy/FAISS as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Artifact:
    """One artifact folder. `config_hash` identifies the configuration (and upstream) that makes it."""

    path: Path
    config_hash: str | None = None
    upstream: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # -- lifecycle ------------------------------------------------------------------------------
    def begin(self, *, overwrite: bool = False) -> None:
        """Claim the folder for `config_hash`. Refuses to mix outputs of two configurations."""
        lineage_path = self.path / LINEAGE
        if lineage_path.exists():
            old = read_json(lineage_path)
            if old.get("config_hash") != self.config_hash:
                if not overwrite:
                    raise ArtifactError(
                        f"{self.path} was made by a different configuration "
                        f"(config hash {old.get('config_hash')}, now {self.config_hash}). "
                        "Use a new run folder, or pass --overwrite to discard it."
                    )
                self.clear()
        self.path.mkdir(parents=True, exist_ok=True)
        if not lineage_path.exists():
            atomic_write_json(
                lineage_path,
                {"config_hash": self.config_hash, "upstream": self.upstream, "started": time.time()},
            )

    def clear(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)

    # -- shards ---------------------------------------------------------------------------------
    def shard_path(self, index: int, suffix: str = ".parquet") -> Path:
        return self.path / f"{shard_name(index)}{suffix}"

    def marker_path(self, index: int) -> Path:
        return self.path / f"{shard_name(index)}.done"

    def is_done(self, index: int) -> bool:
        return self.marker_path(index).exists()

    def mark_done(self, index: int, rows: int, files: list[str], **info: Any) -> None:
        atomic_write_json(self.marker_path(index), {"rows": rows, "files": files, **info})

    def done_shards(self) -> list[int]:
        out = []
        for p in self.path.glob("part-*.done"):
            out.append(int(p.stem.split("-")[1]))
        return sorted(out)

    def marker(self, index: int) -> dict[str, Any]:
        return read_json(self.marker_path(index))

    # -- manifest -------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def is_complete(self) -> bool:
        return self.manifest_path.exists()

    def write_manifest(self, *, kind: str, num_shards: int, extra: dict[str, Any] | None = None) -> dict:
        markers = [self.marker(i) for i in range(num_shards)]
        schema = None
        first = self.shard_path(0)
        if first.exists():
            schema = [f"{f.name}: {f.type}" for f in pq.read_schema(first)]
        manifest = {
            "kind": kind,
            "config_hash": self.config_hash,
            "upstream": self.upstream,
            "num_shards": num_shards,
            "rows": int(sum(m["rows"] for m in markers)),
            "schema": schema,
            "code_version": __version__,
            "finished": time.time(),
            **(extra or {}),
        }
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise ArtifactError(f"{self.path} is not complete (no {MANIFEST}); run or resume its stage first")
        return read_json(self.manifest_path)

    # -- reading --------------------------------------------------------------------------------
    def shard_indices(self) -> list[int]:
        if self.is_complete():
            return list(range(self.manifest()["num_shards"]))
        return self.done_shards()

    def read_shard(self, index: int, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.shard_path(index), columns=columns)

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        for i in self.shard_indices():
            yield self.read_shard(i, columns)

    def read_all(self, columns: list[str] | None = None) -> pa.Table:
        tables = list(self.iter_tables(columns))
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)


def open_complete(path: Path | str) -> Artifact:
    """An existing finished artifact, for reading; raises ArtifactError with a hint if unfinished."""
    art = Artifact(Path(path))
    manifest = art.manifest()
    art.config_hash = manifest.get("config_hash")
    art.upstream = manifest.get("upstream", {})
    return art
