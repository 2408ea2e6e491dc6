"""Results on stdout, everything else on stderr: `emit()` for command results, `json_stdout()` for
`--json` runs (while it is active, any print of a library goes to stderr, so stdout holds one JSON
document and nothing else)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

_json_fd: int | None = None  # the real stdout while json_stdout() is active (fd-level redirect)
_json_stream: Any = None  # ... or the stream that was sys.stdout (when stdout is not fd 1, e.g. in tests)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def print_json(data: Any) -> None:
    """Write one JSON document to the real stdout (also inside json_stdout())."""
    text = dumps(data) + "\n"
    if _json_fd is not None:
        os.write(_json_fd, text.encode())
    elif _json_stream is not None:
        _json_stream.write(text)
        _json_stream.flush()
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def emit(args: Any, data: Any, text: str | None = None) -> None:
    """A command's result: JSON with `--json`, else `text` (or the JSON when there is no text)."""
    if getattr(args, "json", False) or text is None:
        print_json(data)
    else:
        print(text)


@contextmanager
def json_stdout() -> Iterator[None]:
    """Send sys.stdout and file descriptor 1 to stderr; print_json() still reaches the real stdout."""
    global _json_fd, _json_stream
    original = sys.stdout
    try:
        fd_level = original.fileno() == 1
    except (AttributeError, OSError, ValueError):
        fd_level = False
    saved = None
    original.flush()
    if fd_level:
        saved = os.dup(1)
        os.dup2(2, 1)
        _json_fd = saved
    else:
        _json_stream = original
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = original
        _json_fd, _json_stream = None, None
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
