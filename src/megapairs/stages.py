"""Stages: plan shards deterministically, run one shard at a time, finalise a manifest.

A stage never knows where it runs. An executor (`megapairs.executors`) takes the pending shard
tasks and calls the stage's worker on them, in-process or on Ray actors. The worker is built by
`Stage.make_worker()` *inside* the worker process (models load there and stay loaded across
shards); the stage object itself holds only configs and paths, so it pickles cheaply.

Per-shard statistics go into the shard's completion marker, so a resumed run reports the same
totals as an uninterrupted one: `finalize` reads them back from the markers.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from megapairs.artifacts import Artifact, ArtifactError, open_complete
from megapairs.configbase import ConfigBase

log = logging.getLogger("megapairs")


@dataclass(frozen=True)
class ShardTask:
    index: int
    payload: Any  # small and picklable: a list of source items, a row range, ...
    size: int = 0  # items in the shard, for progress


ShardWorker = Callable[[ShardTask], None]


class Stage(ABC):
    """One arrow of the pipeline. Subclasses set `name` (the artifact folder) and `kind`."""

    name: str = ""
    kind: str = ""
    # Upstream artifact folder names (relative to the run root) this stage reads.
    inputs: tuple[str, ...] = ()

    def __init__(self, root: Path | str, config: ConfigBase, *, output: Path | str | None = None) -> None:
        self.root = Path(root)
        self.config = config
        self.output_path = Path(output) if output is not None else self.root / self.name

    # -- lineage --------------------------------------------------------------------------------
    def input_artifact(self, name: str) -> Artifact:
        try:
            return open_complete(self.root / name)
        except ArtifactError as e:
            raise ArtifactError(f"stage {self.name!r} needs {name!r}: {e}") from None

    def upstream_hashes(self) -> dict[str, str]:
        return {n: str(self.input_artifact(n).config_hash) for n in self.inputs}

    def output(self) -> Artifact:
        ups = self.upstream_hashes()
        return Artifact(self.output_path, self.config.config_hash(*sorted(ups.items())), ups)

    # -- the three steps ------------------------------------------------------------------------
    @abstractmethod
    def plan(self) -> list[ShardTask]:
        """All shards, deterministically (same inputs + config -> same list)."""

    @abstractmethod
    def make_worker(self) -> ShardWorker:
        """Build what a worker needs (models, indexes) and return a function that writes one shard
        (files + completion marker via `self.output()`)."""

    def finalize(self, artifact: Artifact, tasks: list[ShardTask]) -> dict[str, Any]:
        """Return extra manifest fields (stats aggregated from markers, model specs...)."""
        return {}


def run_stage(stage: Stage, executor: Any = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) a stage: skip shards whose marker exists, then write the manifest. A finished
    stage whose shard marker was deleted (a damaged shard, see errors.damaged_parquet) redoes that shard."""
    from megapairs.executors import LocalExecutor

    executor = executor or LocalExecutor()
    art = stage.output()
    art.settle_aside()  # a replaced folder left by a killed run: dropped or put back
    # --overwrite of another config's output: set it aside, and delete it only once the new output
    # holds a finished shard (a dead server or a typo in the new config must not cost the old one).
    replaced = overwrite and art.conflicts()
    if replaced:
        art.set_aside()
    try:
        return _run(stage, art, executor, overwrite)
    finally:
        if replaced and art.settle_aside():
            log.warning("%s: nothing finished under the new config; the replaced %s is back", stage.name, art.path)


def _run(stage: Stage, art: Artifact, executor: Any, overwrite: bool) -> dict[str, Any]:
    art.begin(overwrite=overwrite)
    if art.is_complete() and not overwrite and len(art.done_shards()) >= art.manifest()["num_shards"]:
        log.info("%s: already complete (%s), skipping", stage.name, art.path)
        return art.manifest()
    art.manifest_path.unlink(missing_ok=True)
    tasks = stage.plan()
    pending = [t for t in tasks if not art.is_done(t.index)]
    if len(pending) < len(tasks):
        log.info("%s: resuming, %d of %d shards already done", stage.name, len(tasks) - len(pending), len(tasks))
    executor.run(stage, pending)
    missing = [t.index for t in tasks if not art.is_done(t.index)]
    if missing:
        raise ArtifactError(f"{stage.name}: shards {missing[:10]} did not finish; rerun to resume")
    extra = stage.finalize(art, tasks)
    return art.write_manifest(kind=stage.kind, num_shards=len(tasks), extra=extra)


def sum_marker_counts(art: Artifact, tasks: list[ShardTask], key: str) -> dict[str, int]:
    """Add up a dict of counts stored under `key` in every shard marker."""
    total: dict[str, int] = {}
    for t in tasks:
        for k, v in art.marker(t.index).get(key, {}).items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items()))
