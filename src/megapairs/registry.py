"""Backends chosen by spec strings: `prefix:rest` -> a factory registered under `prefix`.

Specs go into manifests and cards verbatim, so a run records exactly which model made what.
Third parties register their own prefixes with `Registry.register`.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from megapairs.errors import UserError

T = TypeVar("T")


class SpecError(UserError, ValueError):
    """A spec string names no registered backend, or its arguments are wrong."""


def split_spec(spec: str) -> tuple[str, str]:
    if ":" not in spec:
        raise SpecError(f"spec {spec!r} must look like prefix:argument (e.g. hf:openai/clip-vit-base-patch16)")
    prefix, rest = spec.split(":", 1)
    return prefix.strip().lower(), rest.strip()


class Registry(Generic[T]):
    """Maps spec prefixes to factories `factory(argument: str, **options) -> T`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, prefix: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[prefix.lower()] = factory
            return factory

        return deco

    def prefixes(self) -> list[str]:
        return sorted(self._factories)

    def build(self, spec: str, **options: Any) -> T:
        prefix, rest = split_spec(spec)
        if prefix not in self._factories:
            raise SpecError(
                f"unknown {self.what} spec {spec!r}; known prefixes: {', '.join(self.prefixes()) or 'none'}"
            )
        return self._factories[prefix](rest, **options)
