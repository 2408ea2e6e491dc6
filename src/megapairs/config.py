"""The pipeline config: one section per stage, presets in files, dotted overrides on top."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from megapairs.annotate.config import AnnotateConfig
from megapairs.configbase import ConfigBase, ConfigError, apply_overrides
from megapairs.corpus.config import IngestConfig
from megapairs.embed.config import EmbedConfig
from megapairs.export.config import ExportConfig
from megapairs.followup import FollowupConfig
from megapairs.mine.config import MineConfig

PRESETS = ("demo", "paper", "tiny")
SECTIONS = ("ingest", "embed", "mine", "annotate", "export", "followup", "executor")


@dataclasses.dataclass
class PipelineConfig(ConfigBase):
    ROOT: ClassVar[bool] = True  # errors say `mine.k`, as the user writes it

    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    embed: EmbedConfig = dataclasses.field(default_factory=EmbedConfig)
    mine: MineConfig = dataclasses.field(default_factory=MineConfig)
    annotate: AnnotateConfig = dataclasses.field(default_factory=AnnotateConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    followup: FollowupConfig = dataclasses.field(default_factory=FollowupConfig)  # train / evaluate / index
    executor: str = "local"  # local | ray | ray:ADDRESS

    def validate(self) -> None:
        if not (self.executor in ("local", "ray") or self.executor.startswith("ray:")):
            raise ConfigError(f"executor must be local, ray or ray:ADDRESS, got {self.executor!r}")

    def check_specs(self, where: str = "") -> None:
        """Every section's model specs, whichever stages run now: the saved config.yaml carries them
        to the later ones."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if isinstance(section, ConfigBase):
                section.check_specs(f.name)


def preset_dict(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    text = resources.files("megapairs.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def read_yaml(file: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file; ConfigError naming the file (and line) when it is missing or invalid."""
    path = Path(file)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: invalid YAML ({problem})", hint="fix the file and rerun") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections (ingest:, mine:, ...), "
                          f"got {type(data).__name__}")
    return data


def load_config(preset: str | None = None, file: str | Path | None = None,
                overrides: list[str] | None = None) -> PipelineConfig:
    """Preset, then a YAML file, then dotted overrides (`mine.k=30`), each on top of the last."""
    data: dict[str, Any] = preset_dict(preset) if preset else {}
    if file:
        extra = read_yaml(file)
        for section, values in extra.items():
            if isinstance(values, dict):
                data.setdefault(section, {}).update(values)
            else:
                data[section] = values
    apply_overrides(data, overrides or [])
    return PipelineConfig.from_dict(data)


def save_config(config: PipelineConfig, path: Path) -> None:
    from megapairs.artifacts import atomic_write_bytes

    atomic_write_bytes(path, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
