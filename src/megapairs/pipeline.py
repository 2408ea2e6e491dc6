"""The whole chain: ingest -> embed -> mine -> annotate -> export, each stage resumable; then the
`followup` steps (train, evaluate, index) when the config asks for them."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from megapairs.config import PipelineConfig, save_config
from megapairs.executors import make_executor
from megapairs.stages import Stage, run_stage

log = logging.getLogger("megapairs")

# stage command -> (module, class, config section)
STAGES: dict[str, tuple[str, str, str]] = {
    "ingest": ("megapairs.corpus.stage", "IngestStage", "ingest"),
    "embed": ("megapairs.embed.stage", "EmbedStage", "embed"),
    "mine": ("megapairs.mine.stage", "MineStage", "mine"),
    "annotate": ("megapairs.annotate.stage", "AnnotateStage", "annotate"),
    "export": ("megapairs.export.stage", "ExportStage", "export"),
}
ORDER = list(STAGES)


def available_stages(config: PipelineConfig) -> list[str]:
    return [s for s in ORDER if hasattr(config, STAGES[s][2])]


def make_stage(name: str, root: Path, config: PipelineConfig) -> Stage:
    module, cls, section = STAGES[name]
    return getattr(importlib.import_module(module), cls)(root, getattr(config, section))


def run_pipeline(root: Path | str, config: PipelineConfig, *, until: str | None = None,
                 only: list[str] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the stages in order; returns each stage's manifest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    save_config(config, root / "config.yaml")
    stages = available_stages(config)
    if until:
        if until not in stages:
            raise ValueError(f"--until must be one of {', '.join(stages)}")
        stages = stages[: stages.index(until) + 1]
    if only:
        stages = [s for s in stages if s in only]
    executor = make_executor(config.executor)
    manifests = {}
    for name in stages:
        log.info("stage %s", name)
        manifests[name] = run_stage(make_stage(name, root, config), executor, overwrite=overwrite)
    f = config.followup
    if "export" in stages and not only and (f.train or f.evaluate or f.index):
        from megapairs.followup import run_followup

        log.info("followup: %s", ", ".join(s for s in ("train", "evaluate", "index") if getattr(f, s)))
        manifests["followup"] = run_followup(root, f)
    return manifests
