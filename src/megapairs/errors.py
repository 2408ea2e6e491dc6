"""Errors a user can act on, and how the CLI turns any exception into one line.

Raise a subclass of `UserError` (exit code 2: a wrong flag, value, file or input) or `RunFailure`
(exit code 1: the run could not finish, e.g. a server went away) with a message that names the
cause, and a `hint` with the next step. `describe()` maps these, the standard library's and a few
libraries' errors (YAML, tar, PIL, Ray, Arrow/Parquet, CUDA memory, FAISS, HTTP connections, a full
disk) to `(exit_code, line)`; `print_error()` prints that line for every entry point, and
`--debug` adds the traceback.
"""

from __future__ import annotations

import errno
import re
import sys
import tarfile
import traceback
from pathlib import Path
from typing import Any, TextIO


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


class DamagedFile(UserError):
    """A file the run wrote earlier cannot be read any more (cut short, overwritten, bad disk)."""

    path: str = ""  # the file, when known (`megapairs status` lists it)
    reason: str = ""  # what is wrong with it, in a few words


class MissingField(UserError, KeyError):
    """An input row or record lacks a field the command needs; the message names the file or table."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else type(self).__name__


class ModelNotFound(UserError, FileNotFoundError):
    """A model spec names no model, a folder that does not exist, or a hub name that cannot be found."""

    def __str__(self) -> str:  # OSError's own __str__ would show the errno tuple
        return str(self.args[0]) if self.args else type(self).__name__


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


# Stage folder in a run -> the command that writes it (for "rerun `megapairs ingest --run RUN`").
FOLDER_STAGE = {"corpus": "ingest", "embeddings": "embed", "pairs": "mine", "annotations": "annotate",
                "dataset": "export"}
PARQUET_DAMAGE = ("Parquet magic bytes", "Couldn't deserialize thrift", "Parquet file size is 0",
                  "Unexpected end of stream", "Invalid column metadata", "is not a parquet file")


# What torch says when a CUDA device is asked for on a machine without one.
NO_CUDA = ("Torch not compiled with CUDA enabled", "_cuda_setDevice", "Found no NVIDIA driver",
           "No CUDA GPUs are available", "CUDA driver initialization failed")


def is_damaged_parquet(exc: BaseException) -> bool:
    """An Arrow error that says a Parquet file is cut short or is not Parquet (not a missing file)."""
    return isinstance(exc, (ValueError, OSError)) and not isinstance(exc, FileNotFoundError) \
        and any(p in str(exc) for p in PARQUET_DAMAGE)


def shard_marker(path: Path) -> Path | None:
    """The completion marker of the artifact shard that `path` belongs to (None if it is not one):
    the marker listing the file (an export's split folders number their parts apart from the shards),
    else the one of the same part name."""
    import json

    path = Path(path).absolute()
    for folder in path.parents:
        done = folder / ".megapairs" / "done"
        if not (folder / ".megapairs").is_dir():
            continue
        rel = str(path.relative_to(folder))
        for marker in sorted(done.glob("part-*.json")):
            try:
                if rel in json.loads(marker.read_text()).get("files", []):
                    return marker
            except (OSError, ValueError, AttributeError):
                continue
        m = re.match(r"(part-\d+)", path.name)
        return done / f"{m.group(1)}.json" if m and path.parent == folder else None
    return None


def damaged_parquet(path: Path | str | None, exc: BaseException) -> DamagedFile:
    """A one-line error for an unreadable Parquet file: which file, and how to rewrite it."""
    if path is None:
        found = re.search(r"'([^']+\.parquet)'", str(exc))
        path = found.group(1) if found else None
    reason = next((p for p in PARQUET_DAMAGE if p in str(exc)), "unreadable")
    if path is None:
        return DamagedFile(f"a Parquet file is damaged ({reason})",
                           hint="--debug shows which; delete its shard marker (.megapairs/done/part-N.json) and "
                           "rerun its stage to rewrite it")
    path = Path(path)
    marker = shard_marker(path)
    if marker is None:
        return DamagedFile(f"{path} is damaged ({reason})", hint="re-create or re-copy it")
    art = marker.parent.parent.parent
    stage = FOLDER_STAGE.get(art.name)
    again = f"`megapairs {stage} --run {art.parent}`" if stage else "its stage"
    return DamagedFile(f"shard {path} is damaged ({reason})",
                       hint=f"delete its marker {marker} and rerun {again} to rewrite that shard")


def rerun_hint(artifact: Path) -> str:
    """How to rewrite an artifact folder of a run: its stage's command, when the folder is a stage's."""
    stage = FOLDER_STAGE.get(artifact.name)
    return f"rerun `megapairs {stage} --run {artifact.parent}`" if stage else "rerun the command that wrote it"


def damaged_json(path: Path, exc: ValueError) -> DamagedFile:
    """A bookkeeping JSON file (marker, manifest, lineage) that no longer parses."""
    reason = getattr(exc, "msg", None) or _first_line(str(exc))
    art = path.parent.parent if path.parent.name == "done" else path.parent
    art = art.parent if art.name == ".megapairs" else art
    again = rerun_hint(art)
    err = DamagedFile(f"{path} is damaged (not JSON: {reason})", hint=f"delete it and {again} to rewrite it")
    err.path, err.reason = str(path), f"not JSON: {reason}"
    return err


def _faiss_message(exc: BaseException) -> str | None:
    """The message of a FAISS C++ error (`Error in ... at .../faiss/...: Error: '...' failed: MSG`)."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or "faiss" not in text.lower() or not text.startswith("Error in "):
        return None
    found = re.search(r" at \S+:\d+: (?:Error: '.*?' failed: )?(.*)", text, re.S)
    return _first_line(found.group(1)) if found and found.group(1).strip() else _first_line(text)


def _connect_url(exc: BaseException) -> str | None:
    try:
        return str(exc.request.url)  # type: ignore[attr-defined]  # httpx errors carry their request
    except (AttributeError, RuntimeError):
        return None


def _library(exc: BaseException) -> tuple[int, str] | None:
    """Hints for the library errors users meet most: damaged Parquet, CUDA memory, FAISS, refused
    connections, a full disk."""
    if is_damaged_parquet(exc):
        return 2, damaged_parquet(None, exc).line()
    if type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc):
        return 1, (f"the GPU ran out of memory ({_first_line(str(exc))[:120]}); lower the batch size "
                   f"(e.g. embed.batch_size, train batch_size or grad_cache_chunk, --batch-size) and {RESUME_HINT}")
    text = str(exc)
    if any(m in text for m in NO_CUDA):
        return 2, (f"CUDA is not available here ({_first_line(text)[:100]}); set the device to cpu (embed.device=cpu, "
                   "mine.device=cpu, train device=cpu) or run on a machine with an NVIDIA GPU")
    if "device type at start of device string" in text:
        given = text.rsplit(":", 1)[-1].strip()
        return 2, f"{given!r} is not a torch device; use cpu, cuda, cuda:N or mps"
    faiss_msg = _faiss_message(exc)
    if faiss_msg is not None:
        return 1, (f"FAISS failed: {faiss_msg}; a flat index (mine.index=flat, --faiss flat) or fewer lists "
                   "(nlist) avoids most of these with small inputs")
    if type(exc).__name__ in ("ConnectError", "ConnectTimeout") or isinstance(exc, ConnectionRefusedError):
        url = _connect_url(exc)
        where = f" at {url}" if url else ""
        what = "timed out connecting" if "Timeout" in type(exc).__name__ else "connection refused"
        return 1, (f"{what}{where} ({type(exc).__name__}: {_first_line(str(exc))}); is the server "
                   f"running{where}? start it or fix the URL, then {RESUME_HINT}")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {exc.filename}" if exc.filename else ""
        return 1, f"the disk is full{where}; free some space (or point the output elsewhere) and {RESUME_HINT}"
    return None


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line naming the cause and the next step) for any exception."""
    exc = unwrap(exc)
    if isinstance(exc, MegapairsError):
        return exc.exit_code, " ".join(exc.line().split())
    known = _library(exc)
    if known is not None:
        return known[0], " ".join(known[1].split())
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


def print_error(exc: BaseException, *, prog: str = "megapairs", debug: bool = False,
                stream: TextIO | None = None) -> int:
    """Print `PROG: error: <one line>` (after the traceback when `debug`) and return the exit code:
    what every entry point (megapairs, megapairs-export, -train, -evaluate, -search) does."""
    stream = stream or sys.stderr
    code, line = describe(exc)
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    print(f"{prog}: error: {line}", file=stream)
    return code


def debug_requested(args: Any = None) -> bool:
    """--debug on the command line, or MEGAPAIRS_DEBUG=1 in the environment."""
    import os

    return bool(getattr(args, "debug", False)) or os.environ.get("MEGAPAIRS_DEBUG", "") not in ("", "0")


def run_entry(func: Any, args: Any, prog: str) -> int:
    """Run a subcommand function as a standalone program (`python -m megapairs.X.cli`): its exit code,
    or for an error the one line of `print_error` (the `megapairs` command does the same in cli.main)."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {RESUME_HINT}", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; the traceback with --debug / MEGAPAIRS_DEBUG=1
        return print_error(e, prog=prog, debug=debug_requested(args))
