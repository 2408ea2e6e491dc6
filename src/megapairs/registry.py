"""Backends chosen by spec strings: `prefix:rest` -> a factory registered under `prefix`.

Specs go into manifests and cards verbatim, so a run records exactly which model made what.
Third parties register their own prefixes with `Registry.register`. `Registry.check` tells a
malformed or unknown spec apart without building anything (the pipeline checks every spec of a
config at run start, so a typo in a late stage's model does not wait hours for that stage).
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterable, TypeVar

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
        self._checks: dict[str, Callable[[str], None]] = {}

    def register(self, prefix: str, check: Callable[[str], None] | None = None
                 ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """`check(argument)`, if given, raises SpecError (or ValueError) for an argument the factory
        would refuse; it must be cheap: no model loading, no network."""
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[prefix.lower()] = factory
            self._checks.pop(prefix.lower(), None)  # a replaced factory's check goes with it
            if check is not None:
                self._checks[prefix.lower()] = check
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

    def check(self, spec: Any, field: str) -> None:
        """Raise SpecError naming the config `field` when `spec` is malformed, has an unknown prefix or
        an argument its prefix refuses. Builds nothing. (An empty `field` leaves the name out, for a
        spec nested in another, as in `captions:openai:...`.)"""
        where = f"{field}: " if field else ""
        known = ", ".join(f"{p}:" for p in self.prefixes()) or "none"
        hint = f"valid {self.what} prefixes: {known}"
        if not isinstance(spec, str) or ":" not in spec:
            raise SpecError(f"{where}{spec!r} is not a spec of the form prefix:argument", hint=hint)
        prefix, rest = split_spec(spec)
        if prefix not in self._factories:
            raise SpecError(f"{where}unknown {self.what} spec {spec!r}", hint=hint)
        check = self._checks.get(prefix)
        if check is None:
            return
        try:
            check(rest)
        except (UserError, ValueError, OSError) as e:  # a check may raise ModelNotFound, say
            msg = str(e.args[0]) if e.args else type(e).__name__
            raise SpecError(f"{where}{msg}", hint=getattr(e, "hint", "") or None) from None


def needs_argument(prefix: str, example: str) -> Callable[[str], None]:
    """A spec check: `prefix:` must name something (`hf:` alone names no model)."""
    def check(arg: str) -> None:
        if not arg.strip():
            raise SpecError(f"the {prefix}: spec names no model, e.g. {prefix}:{example}")

    return check


def one_of(prefix: str, names: Iterable[str], what: str) -> Callable[[str], None]:
    """A spec check: the argument is one of `names` (the packaged offline models, say)."""
    choices = sorted(names)

    def check(arg: str) -> None:
        if arg not in choices:
            raise SpecError(f"unknown {what} {prefix}:{arg}; choose from "
                            f"{', '.join(f'{prefix}:{n}' for n in choices)}")

    return check
