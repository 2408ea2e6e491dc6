"""Errors a user can act on, and how the CLI turns any exception into one line.

Raise a subclass of `UserError` (exit code 2: a wrong flag, value, file or input) or `RunFailure`
(exit code 1: the run could not finish, e.g. a server went away) with a message that names the
cause, and a `hint` with the next step. `describe()` maps these, the standard library's and a few
libraries' errors (YAML, tar, PIL, Ray) to `(exit_code, line)`; `megapairs --debug` shows the
traceback instead.
"""

from __future__ import annotations

import tarfile
from typing import Any


class MegapairsError(Exception):
    """Base of all megapairs errors meant for the user. `exit_code` is what the CLI returns."""

    exit_code: int = 1
    hint: str = ""

    def __init__(self, message: str = "", *args: Any, hint: str | None = None) -> None:
        super().__init__(message, *args)
        if hint is not None:
            self.hint = hint

    def line(self) -> str:
        msg = str(self.args[0]) if self.args else type(self).__name__
        return f"{msg}; {self.hint}" if self.hint and self.hint not in msg else msg


class UserError(MegapairsError):
    """Usage or input error: a flag, value, path or input file is wrong (exit code 2)."""

    exit_code = 2


class RunFailure(MegapairsError):
    """The inputs were fine but the work failed (a backend died, a disk filled): exit code 1.
    What finished is kept; the hint says how to resume."""

    exit_code = 1


RESUME_HINT = "rerun the same command to resume (finished work is kept)"
DEBUG_HINT = "rerun with --debug for the traceback"


def unwrap(exc: BaseException) -> BaseException:
    """The exception a Ray task raised, not Ray's wrapper around it (nested wrappers too)."""
    seen = 0
    while seen < 10 and type(exc).__module__.startswith("ray.") and getattr(exc, "cause", None) is not None:
        cause = exc.cause  # type: ignore[attr-defined]
        if not isinstance(cause, BaseException):
            break
        exc, seen = cause, seen + 1
    return exc


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines[:1]) if lines else ""


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line naming the cause and the next step) for any exception."""
    exc = unwrap(exc)
    if isinstance(exc, MegapairsError):
        return exc.exit_code, " ".join(exc.line().split())
    try:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or _first_line(str(exc))
            return 2, f"invalid YAML{where}: {problem}; fix the file and rerun"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, tarfile.TarError):
        return 2, f"cannot read a tar archive ({_first_line(str(exc))}); check that the .tar source is complete"
    try:
        from PIL import UnidentifiedImageError

        if isinstance(exc, UnidentifiedImageError):
            return 2, f"{_first_line(str(exc))}; give a PNG, JPEG, WebP or other image PIL can read"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, FileNotFoundError):
        name = f": {exc.filename}" if exc.filename and str(exc.filename) not in str(exc) else ""
        return 2, f"{_first_line(str(exc))}{name}"
    if isinstance(exc, PermissionError):
        return 2, f"permission denied: {exc.filename or _first_line(str(exc))}; check the folder's permissions"
    if isinstance(exc, ImportError):
        return 2, f"{_first_line(str(exc))}; install the missing extra (see README.md)"
    if isinstance(exc, ValueError):
        return 2, _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, MemoryError):
        return 1, f"out of memory; lower the batch or shard size and {RESUME_HINT}"
    if isinstance(exc, OSError):
        return 1, f"{type(exc).__name__}: {_first_line(str(exc))}; fix it and {RESUME_HINT}"
    detail = _first_line(str(exc))
    return 1, f"unexpected {type(exc).__name__}{': ' + detail if detail else ''}; {DEBUG_HINT} and report it"
