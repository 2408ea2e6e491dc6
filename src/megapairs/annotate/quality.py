"""How much of an annotation run the configured models really wrote, and when to stop.

Two shares, over the rows of the run (pairs judged to have no describable difference excluded from
neither; they count as dropped, not failed):
- fallback share: rows a fallback backend wrote (`fallback` = True);
- failure share: rows with no usable output (`describe_failed`, `write_failed`).
When either passes `annotate.max_fallback_share` / `annotate.max_failure_share`, the stage stops
with `AnnotationDegraded` after saving the shard it was on, so nothing finished is lost; raise the
threshold (operational, not hashed) and rerun to accept the run as it is.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MIN_ROWS = 32  # a worker judges its shares only once it has seen this many rows


class AnnotationDegraded(RuntimeError):
    """The configured models wrote too little of the output (see module docstring)."""


def shares(status: dict[str, int], fallback_rows: int) -> dict[str, Any]:
    total = sum(status.values())
    failed = sum(n for s, n in status.items() if s not in ("ok", "no_change"))
    return {"rows": total, "ok": status.get("ok", 0), "no_change": status.get("no_change", 0), "failed": failed,
            "fallback": fallback_rows,
            "ok_share": status.get("ok", 0) / total if total else 0.0,
            "fallback_share": fallback_rows / total if total else 0.0,
            "failure_share": failed / total if total else 0.0}


def _verdict(config: Any, q: dict[str, Any]) -> str:
    if q["fallback_share"] > config.max_fallback_share:
        return (f"annotate: {q['fallback']} of {q['rows']} rows ({q['fallback_share']:.0%}) were written by a "
                f"fallback backend, above annotate.max_fallback_share={config.max_fallback_share}")
    if q["failure_share"] > config.max_failure_share:
        return (f"annotate: {q['failed']} of {q['rows']} rows ({q['failure_share']:.0%}) failed, above "
                f"annotate.max_failure_share={config.max_failure_share}")
    return ""


_HINT = ("; check the describer/writer servers and the rows' `reason` column (megapairs inspect RUN/annotations), "
         "or raise the threshold to accept the run")


class QualityTally:
    """Running counts of one worker's rows, checked after each saved shard."""

    def __init__(self) -> None:
        self.status: Counter[str] = Counter()
        self.fallback = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.status.update(r["status"] for r in rows)
        self.fallback += sum(bool(r["fallback"]) for r in rows)

    def check(self, config: Any) -> None:
        q = shares(dict(self.status), self.fallback)
        if q["rows"] >= MIN_ROWS and (why := _verdict(config, q)):
            raise AnnotationDegraded(why + _HINT)


def check_totals(config: Any, status: dict[str, int], fallback_rows: int) -> dict[str, Any]:
    """The run's shares (for the manifest); raises `AnnotationDegraded` past a threshold."""
    q = shares(status, fallback_rows)
    if why := _verdict(config, q):
        raise AnnotationDegraded(why + _HINT)
    return q


def summary_line(q: dict[str, Any]) -> str:
    return (f"annotations: {q['rows']} rows: {q['ok']} ok ({q['ok_share']:.0%}), {q['no_change']} dropped with no "
            f"describable difference, {q['failed']} failed ({q['failure_share']:.0%}), {q['fallback']} by a "
            f"fallback backend ({q['fallback_share']:.0%})")
