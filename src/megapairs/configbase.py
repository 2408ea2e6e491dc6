"""Validated dataclass configs: building from dicts, dotted overrides, stable hashes.

Each stage owns one small dataclass (in its own package) that subclasses `ConfigBase`; the
pipeline config in `megapairs.config` composes them. Construction validates types and values and
names the offending field in the error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, ClassVar, TypeVar, get_args, get_origin, get_type_hints

import yaml

from megapairs.errors import UserError

T = TypeVar("T", bound="ConfigBase")


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown, or out of range. The message names the field."""


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in get_args(hint):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} does not fit {hint}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return hint.from_dict(value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(hint) or (Any, Any)
        return {_check_type(k, kt, where): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


@dataclasses.dataclass
class ConfigBase:
    """Base for stage configs. Subclasses add fields and may override `validate()`."""

    # Fields that do not change a stage's output (batch size, device, progress); left out of hashes
    # so that a resumed run may change them.
    NOT_HASHED: ClassVar[tuple[str, ...]] = ()
    # Fields added after runs existed: left out of the hash while at their default, so a run saved
    # without them keeps its hash and resumes (its config.yaml lacks the field, so it reads the default).
    HASHED_IF_SET: ClassVar[dict[str, object]] = {}
    # A root config (the pipeline's) names its fields bare in errors: `mine.k`, not `PipelineConfig.mine.k`.
    ROOT: ClassVar[bool] = False

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        prefix = self.where
        bare = self.ROOT and prefix == type(self).__name__
        for f in dataclasses.fields(self):
            path = f.name if bare else f"{prefix}.{f.name}"
            setattr(self, f.name, _check_type(getattr(self, f.name), hints[f.name], path))
        self.validate()

    @property
    def where(self) -> str:
        """The section name used in error messages (e.g. `mine`)."""
        return getattr(self, "_where", type(self).__name__)

    def validate(self) -> None:
        """Range checks; raise ConfigError naming the field."""

    def check_specs(self, where: str) -> None:
        """Check the backend spec strings (`hf:...`, `openai:...`) against their registries; raise
        SpecError naming the field `where.NAME`. Imports the backend modules, loads no model. Called at
        run start (not in `validate`, which runs on every config load and must stay light)."""

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"unknown field(s) {', '.join(f'{where}.{u}' if where else u for u in unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_where", where or cls.__name__)
        defaults = cls()
        kwargs = {f.name: data.get(f.name, getattr(defaults, f.name)) for f in dataclasses.fields(cls)}
        for k, v in kwargs.items():
            setattr(obj, k, v)
        obj.__post_init__()
        return obj

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, ConfigBase):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def hashed_dict(self) -> dict[str, Any]:
        d = self.to_dict()
        for name in self.NOT_HASHED:
            d.pop(name, None)
        for name, default in self.HASHED_IF_SET.items():
            if d.get(name) == default:
                d.pop(name, None)
        return d

    def config_hash(self, *upstream: str) -> str:
        payload = json.dumps([self.hashed_dict(), list(upstream)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def parse_override(item: str) -> tuple[list[str], Any]:
    """`mine.k=30` -> (["mine", "k"], 30). Values are parsed as YAML (numbers, lists, bools)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.field=value")
    key, raw = item.split("=", 1)
    raw = raw.strip()
    if not raw:
        return key.strip().split("."), ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    # `template:` or `hf:org/model` are spec strings, not YAML mappings, unless written as `{...}`.
    if isinstance(value, dict) and not raw.startswith("{"):
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[path[-1]] = value
    return data
