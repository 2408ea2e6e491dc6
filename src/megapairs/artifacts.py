"""Artifacts on disk: a folder of shards, one completion marker per shard, and a manifest.

Layout of an artifact folder::

    <artifact>/
      part-00000.parquet          # a shard (extra files of the same shard may sit beside it)
      .megapairs/
        lineage.json              # written when the first shard starts: config hash + upstream hashes
        done/part-00000.json      # completion marker: JSON with row count and the file names it covers
        manifest.json             # written last, by finalize: schema, counts, config hash, models, stats

The bookkeeping lives in a hidden folder so that the artifact folder itself reads as a Parquet
dataset (`pq.read_table(folder)`, `pyarrow.dataset.dataset(folder)`,
`datasets.load_dataset("parquet", data_dir=folder)` all skip dot-folders). Folders written by
megapairs 0.1 (markers and manifest beside the shards) are moved into this layout on first use.

A shard counts as done only when its marker exists. Writers write to a temporary name and rename,
so a crash leaves either nothing or a finished file, never a half-written one that looks finished.
Files get the usual permissions for the process umask (0644 under umask 022), not mkstemp's 0600.
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
from megapairs.errors import UserError, damaged_json, damaged_parquet, is_damaged_parquet

META_DIR = ".megapairs"
MANIFEST = f"{META_DIR}/manifest.json"
LINEAGE = f"{META_DIR}/lineage.json"
DONE_DIR = f"{META_DIR}/done"
LEGACY_MANIFEST = "manifest.json"
LEGACY_LINEAGE = "_lineage.json"


class ArtifactError(UserError, RuntimeError):
    """An artifact is missing, incomplete, or was made by a different configuration."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


def file_mode() -> int:
    """Permissions of a new regular file under the current umask (0o644 for umask 022)."""
    umask = _read_umask()
    return 0o666 & ~umask


def _read_umask() -> int:
    try:  # Linux: read it without changing it (os.umask() would, briefly, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def temp_file(path: Path) -> tuple[int, str]:
    """A temporary file beside `path` (for write-then-rename) with umask permissions, as (fd, name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = temp_file(path)
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
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:  # cut short (a full disk, a killed copy): name the file
        raise damaged_json(Path(path), e) from None


def write_table(path: Path, table: pa.Table) -> None:
    """Write a Parquet file atomically."""
    fd, tmp = temp_file(path)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write a .npy file atomically (row-aligned embeddings, readable by numpy/FAISS as is)."""
    fd, tmp = temp_file(path)
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
        migrate_legacy(self.path)

    def is_started(self) -> bool:
        return (self.path / LINEAGE).exists()

    def lineage(self) -> dict[str, Any]:
        return read_json(self.path / LINEAGE)

    # -- lifecycle ------------------------------------------------------------------------------
    def begin(self, *, overwrite: bool = False) -> None:
        """Claim the folder for `config_hash`. Refuses to mix outputs of two configurations."""
        lineage_path = self.path / LINEAGE
        if self.conflicts():
            if not overwrite:
                self.refuse()
            self.clear()
        elif self.is_started() and self.lineage().get("config_hash") != self.config_hash:
            self.clear()  # nothing finished under the old config (its first shard failed): start afresh
        self.path.mkdir(parents=True, exist_ok=True)
        if not lineage_path.exists():
            atomic_write_json(
                lineage_path,
                {"config_hash": self.config_hash, "upstream": self.upstream, "started": time.time()},
            )

    def conflicts(self) -> bool:
        """True when the folder holds finished output (a shard or more) of another configuration than
        `config_hash`. A folder whose shards all failed holds nothing to keep, so a fixed config takes it."""
        return self.is_started() and self.lineage().get("config_hash") != self.config_hash \
            and self.has_finished_work()

    def has_finished_work(self) -> bool:
        return self.is_complete() or any((self.path / DONE_DIR).glob("part-*.json"))

    def refuse(self) -> None:
        raise ArtifactError(
            f"{self.path} was made by a different configuration "
            f"(config hash {self.lineage().get('config_hash')}, now {self.config_hash}). "
            "Use a new run folder, or pass --overwrite to discard it."
        )

    def clear(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)

    # -- --overwrite without losing the old output to a failed first shard ------------------------
    @property
    def aside_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.replaced")

    def set_aside(self) -> Path:
        """Move the folder out of the way (a rename) instead of deleting it, until the new run has
        finished a shard: see `settle_aside`."""
        shutil.rmtree(self.aside_path, ignore_errors=True)
        os.replace(self.path, self.aside_path)
        return self.aside_path

    def settle_aside(self) -> bool:
        """Drop the set-aside folder once the new output holds finished work, else put it back.
        Returns True when the old folder was restored."""
        if not self.aside_path.is_dir():
            return False
        if self.path.is_dir() and self.has_finished_work():
            shutil.rmtree(self.aside_path, ignore_errors=True)
            return False
        self.clear()
        os.replace(self.aside_path, self.path)
        return True

    # -- shards ---------------------------------------------------------------------------------
    def shard_path(self, index: int, suffix: str = ".parquet") -> Path:
        return self.path / f"{shard_name(index)}{suffix}"

    def marker_path(self, index: int) -> Path:
        return self.path / DONE_DIR / f"{shard_name(index)}.json"

    def is_done(self, index: int) -> bool:
        return self.marker_path(index).exists()

    def mark_done(self, index: int, rows: int, files: list[str], **info: Any) -> None:
        atomic_write_json(self.marker_path(index), {"rows": rows, "files": files, **info})

    def done_shards(self) -> list[int]:
        out = []
        for p in (self.path / DONE_DIR).glob("part-*.json"):
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

    def data_files(self) -> list[Path]:
        """The Parquet files of the finished shards, in shard order (from their markers, so the
        split folders of an exported dataset count too)."""
        out = []
        for i in self.shard_indices():
            names = [f for f in self.marker(i).get("files", []) if f.endswith(".parquet")]
            out.extend(self.path / f for f in names) if names else out.append(self.shard_path(i))
        return [p for p in out if p.exists()]

    def read_shard(self, index: int, columns: list[str] | None = None) -> pa.Table:
        path = self.shard_path(index)
        try:
            return pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, OSError) as e:
            if is_damaged_parquet(e):  # name the shard and its marker, not Arrow's "magic bytes"
                raise damaged_parquet(path, e) from e
            raise

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        for i in self.shard_indices():
            yield self.read_shard(i, columns)

    def read_all(self, columns: list[str] | None = None) -> pa.Table:
        tables = list(self.iter_tables(columns))
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)


def manifest_file(folder: Path | str) -> Path:
    """Where the manifest of an artifact folder is (this layout, or beside the shards in 0.1 folders)."""
    folder = Path(folder)
    new = folder / MANIFEST
    return new if new.exists() or not (folder / LEGACY_MANIFEST).exists() else folder / LEGACY_MANIFEST


def migrate_legacy(folder: Path) -> None:
    """Move the bookkeeping of a megapairs 0.1 artifact (`_lineage.json`, `part-*.done` and
    `manifest.json` beside the shards) into `.megapairs/`, so old run folders keep resuming."""
    legacy = folder / LEGACY_LINEAGE
    if not legacy.is_file() or (folder / LINEAGE).exists():
        return
    try:
        (folder / DONE_DIR).mkdir(parents=True, exist_ok=True)
        for marker in folder.glob("part-*.done"):
            os.replace(marker, folder / DONE_DIR / f"{marker.stem}.json")
        if (folder / LEGACY_MANIFEST).is_file():
            os.replace(folder / LEGACY_MANIFEST, folder / MANIFEST)
        os.replace(legacy, folder / LINEAGE)  # last: it marks the move as finished
    except OSError as e:
        raise ArtifactError(f"{folder} was written by megapairs 0.1 and cannot be moved to the current "
                            f"layout ({e}); make it writable once, or rerun into a new folder") from None


def open_complete(path: Path | str) -> Artifact:
    """An existing finished artifact, for reading; raises ArtifactError with a hint if unfinished."""
    art = Artifact(Path(path))
    manifest = art.manifest()
    art.config_hash = manifest.get("config_hash")
    art.upstream = manifest.get("upstream", {})
    return art
