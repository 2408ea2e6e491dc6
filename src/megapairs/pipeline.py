"""The whole chain: ingest -> embed -> mine -> annotate -> export, each stage resumable; then the
`followup` steps (train, evaluate, index) when the config asks for them."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from megapairs.artifacts import Artifact, ArtifactError
from megapairs.config import PipelineConfig, save_config
from megapairs.configbase import ConfigError
from megapairs.errors import FOLDER_STAGE, UserError
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


def make_stage(name: str, root: Path, config: PipelineConfig, output: Path | str | None = None) -> Stage:
    module, cls, section = STAGES[name]
    return getattr(importlib.import_module(module), cls)(root, getattr(config, section), output=output)


def check_accepted(stages: list[Stage], overwrite: bool) -> None:
    """Refuse a config change before anything is written (config.yaml included): every stage whose
    inputs are finished must either match its folder's lineage or be allowed to discard it."""
    for stage in stages:
        try:
            art = stage.output()
        except ArtifactError:
            return  # an input is not finished yet: the stages from here on will build from scratch
        if art.conflicts() and not overwrite:
            art.refuse()
        if art.conflicts() or not art.is_complete():
            return  # rebuilt in this run: what follows cannot be compared yet


def will_work(stages: dict[str, Stage], name: str) -> bool:
    """Whether stage `name` will write anything in this run: its output, or that of a stage before it
    here, is missing, partial, made by another config (--overwrite; without it check_accepted has
    refused) or lacks a shard marker. An output kept as is sends no request (an annotate server may
    then be down)."""
    for n, stage in stages.items():
        try:
            art = stage.output()
        except ArtifactError:
            return True  # an input is not finished yet: built in this run
        if art.conflicts() or not art.is_complete() or len(art.done_shards()) < int(art.manifest()["num_shards"]):
            return True
        if n == name:
            return False
    return False


def _foreign_files(folder: Path) -> bool:
    """A non-empty folder that is not a megapairs artifact (a user's own `dataset/`, say)."""
    return folder.is_dir() and any(folder.iterdir()) and not Artifact(folder).is_started()


def check_output_folder(root: Path, stage: Stage) -> None:
    """Refuse an output folder (`--out`) that is the run, holds it, lies in one of its artifacts, or
    holds files megapairs did not write: the stage claims its output folder, and --overwrite deletes it."""
    out, run = stage.output_path.resolve(), Path(root).resolve()
    default = (run / stage.name).resolve()
    if out == default:
        return
    flag = f"--out {stage.output_path}"
    fix = f"give a new folder outside the run's artifacts (the default is {Path(root) / stage.name})"
    if out == run or out in run.parents:
        raise UserError(f"{flag} is the run folder {root} or a folder above it; writing there would mix the "
                        f"{stage.kind} with the run's artifacts", hint=fix)
    taken = {run / name for name in FOLDER_STAGE} | \
        ({p for p in run.iterdir() if p.is_dir() and (p / ".megapairs").is_dir()} if run.is_dir() else set())
    for folder in sorted(taken):
        if out == folder or folder in out.parents:
            raise UserError(f"{flag} is inside the run's {folder.name} artifact ({folder}); the {stage.kind} "
                            f"would overwrite it", hint=fix)
    if out.is_dir() and any(out.iterdir()):
        if _foreign_files(out):
            raise UserError(f"{flag} is a folder with other files in it, not a megapairs {stage.kind}",
                            hint="give a new or empty folder (a megapairs output folder is replaced as a whole "
                            "on --overwrite)")
        kind = Artifact(out).manifest().get("kind") if Artifact(out).is_complete() else stage.kind
        if kind != stage.kind:
            raise UserError(f"{flag} holds a megapairs {kind} artifact, not a {stage.kind}", hint=fix)


def config_changes(saved: Path, config: PipelineConfig, limit: int = 6) -> list[str]:
    """`section.field: old -> new` for what differs from a run's saved config.yaml (at most `limit`)."""
    import yaml

    try:
        old = yaml.safe_load(saved.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")

    walk(old, yaml.safe_load(yaml.safe_dump(config.to_dict())), "")
    return out[:limit] + ([f"and {len(out) - limit} more"] if len(out) > limit else [])


def _keep_old_config(root: Path, failed: Stage, previous: bytes | None) -> None:
    """A failed --overwrite put the old output back (see stages.run_stage): when the whole run folder
    still matches the config.yaml it had, write that back too, so a plain rerun is not refused."""
    if previous is None or not failed.output_path.is_dir():
        return
    try:
        if Artifact(failed.output_path).lineage().get("config_hash") == failed.output().config_hash:
            return  # the new output stayed (it finished a shard): the new config is the run's
        import yaml

        from megapairs.artifacts import atomic_write_bytes

        old = PipelineConfig.from_dict(yaml.safe_load(previous) or {})
        old_stages = [make_stage(n, root, old) for n in available_stages(old)]
        check_accepted(old_stages, overwrite=False)  # raises if anything no longer matches it
    except Exception:  # noqa: BLE001 - best effort; the original error is what the user sees
        return
    atomic_write_bytes(root / "config.yaml", previous)


def check_usable_corpus(root: Path) -> None:
    """Stop with a clear line when ingest found nothing to embed or pair (instead of FAISS's k > 0)."""
    corpus = Artifact(root / "corpus")
    if not corpus.is_complete():
        return
    m = corpus.manifest()
    usable = int(m.get("usable", sum(v for k, v in (m.get("status_counts") or {}).items() if k == "ok")))
    if usable >= 2:
        return
    counts = m.get("status_counts") or {}
    found = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no items"
    raise UserError(f"ingest source {m.get('source')!r} gave {usable} usable image(s) ({found}); mining needs "
                    "at least 2", hint=f"point ingest.source at a folder of images with captions "
                    f"(`megapairs inspect {root / 'corpus'}` shows why items were rejected)")


def run_pipeline(root: Path | str, config: PipelineConfig, *, until: str | None = None,
                 only: list[str] | None = None, overwrite: bool = False,
                 outputs: dict[str, Path | str] | None = None) -> dict[str, Any]:
    """Run (or resume) the stages in order; returns each stage's manifest. `outputs` puts a stage's
    artifact somewhere else than its folder in the run (e.g. {"export": "/data/mydataset"})."""
    root = Path(root)
    config.check_specs()  # a mistyped model fails now, not when its stage starts hours later
    names = available_stages(config)
    if until:
        if until not in names:
            raise ConfigError(f"--until must be one of {', '.join(names)}, got {until!r}")
        names = names[: names.index(until) + 1]
    if only:
        names = [s for s in names if s in only]
    stages = {n: make_stage(n, root, config, (outputs or {}).get(n)) for n in names}
    for name, stage in stages.items():
        if name in (outputs or {}):
            check_output_folder(root, stage)
        elif _foreign_files(stage.output_path):
            raise UserError(f"{stage.output_path} holds files megapairs did not write (no .megapairs/ folder); "
                            f"the {name} stage writes its {stage.kind} there",
                            hint="use a new run folder (--run), or move those files away")
    try:
        check_accepted(list(stages.values()), overwrite)
    except ArtifactError as e:
        changed = config_changes(root / "config.yaml", config)
        if not changed:
            raise
        raise ArtifactError(f"{e} Changed since the run's config.yaml: {'; '.join(changed)}") from None
    if "annotate" in stages and config.annotate.probe_servers and will_work(stages, "annotate"):
        from megapairs.annotate.probe import probe_servers

        # a server that is down stops the run now, not at annotate; on a Ray cluster a loopback URL is
        # each node's own machine, which the driver cannot check
        probe_servers(config.annotate, remote=config.executor.startswith("ray:"))
    executor = make_executor(config.executor)
    root.mkdir(parents=True, exist_ok=True)
    saved = root / "config.yaml"
    previous = saved.read_bytes() if saved.exists() else None
    # Accepted: from here a plain rerun resumes this config. An output written elsewhere (--out) is
    # not the run's own, so it leaves the run's config as it was.
    if not any(n in stages for n in outputs or {}) or previous is None:
        save_config(config, saved)
    manifests = {}
    for name, stage in stages.items():
        if name in ("embed", "mine"):
            check_usable_corpus(root)
        log.info("stage %s", name)
        try:
            manifests[name] = run_stage(stage, executor, overwrite=overwrite)
        except BaseException:
            _keep_old_config(root, stage, previous)
            raise
        if name == "ingest":
            check_usable_corpus(root)  # a corpus nothing can be mined from is an error here, not at embed
    f = config.followup
    if "export" in stages and not only and (f.train or f.evaluate or f.index):
        from megapairs.followup import run_followup

        log.info("followup: %s", ", ".join(s for s in ("train", "evaluate", "index") if getattr(f, s)))
        manifests["followup"] = run_followup(root, f, overwrite=overwrite)
    return manifests
