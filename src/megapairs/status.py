"""`megapairs status RUN` and `megapairs inspect ARTIFACT`: the run folder as data (for `--json`)
and as text. A path that is not a run folder or not an artifact is a `UserError` (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from megapairs.artifacts import Artifact
from megapairs.errors import UserError

ARTIFACT_ORDER = ["corpus", "embeddings", "pairs", "annotations", "dataset"]
DETAIL_KEYS = ("status_counts", "pairs_by_view", "status", "views")


def run_status_data(root: Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such run folder", hint=f"start one with `megapairs run --run {root}`")
    if Artifact(root).is_started():  # `megapairs status RUN/pairs`
        raise UserError(f"{root} is an artifact folder, not a run folder",
                        hint=f"give the run: `megapairs status {root.parent}` (or `megapairs inspect {root}`)")
    names = ARTIFACT_ORDER + sorted(p.name for p in root.iterdir()
                                    if p.is_dir() and not p.name.startswith(".")
                                    and Artifact(p).is_started() and p.name not in ARTIFACT_ORDER)
    artifacts: dict[str, Any] = {}
    for name in names:
        try:
            artifacts[name] = _artifact_status(root / name)
        except (UserError, KeyError, TypeError, ValueError, AttributeError) as e:  # one damaged artifact
            artifacts[name] = _damaged(root / name, e)  # must not hide the others
    return {"run": str(root), "config": (root / "config.yaml").is_file(), "artifacts": artifacts}


def _artifact_status(folder: Path) -> dict[str, Any]:
    art = Artifact(folder)
    if not art.is_started():
        return {"state": "not started"}
    if art.is_complete():
        m = art.manifest()
        detail = {k: m[k] for k in DETAIL_KEYS if k in m}
        if isinstance(detail.get("views"), dict):
            detail["views"] = {k: (v["spec"] if isinstance(v, dict) else v) for k, v in detail["views"].items()}
        return {"state": "complete", "rows": int(m["rows"]), "num_shards": int(m["num_shards"]), **detail}
    done = art.done_shards()
    return {"state": "partial", "shards_done": len(done), "rows": sum(int(art.marker(i)["rows"]) for i in done)}


def _damaged(folder: Path, exc: Exception) -> dict[str, Any]:
    """A bookkeeping file that does not read (cut short, edited, a field missing): which, and why."""
    from megapairs.errors import DamagedFile, describe, rerun_hint

    again = rerun_hint(folder)
    if isinstance(exc, DamagedFile) and exc.path:
        return {"state": "damaged", "path": exc.path, "reason": exc.reason or str(exc), "hint": exc.hint}
    path = _unreadable(folder)
    if isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):  # valid JSON of the wrong shape
        reason = f"unexpected content ({type(exc).__name__}: {exc})"
    else:
        reason = describe(exc)[1]
    hint = f"delete it and {again} to rewrite it (finished shards are kept)" if path.is_file() else \
        f"check its files, then {again}"
    return {"state": "damaged", "path": str(path), "reason": reason, "hint": hint}


def _unreadable(folder: Path) -> Path:
    """The manifest of a complete artifact, else the first completion marker without a row count."""
    from megapairs.artifacts import DONE_DIR, manifest_file

    manifest = manifest_file(folder)
    if manifest.exists():
        return manifest
    for marker in sorted((folder / DONE_DIR).glob("part-*.json")):
        try:
            int(json.loads(marker.read_text())["rows"])
        except (ValueError, KeyError, TypeError):
            return marker
    return folder / DONE_DIR


def format_status(data: dict[str, Any]) -> str:
    lines = [f"run {data['run']}"]
    for name, a in data["artifacts"].items():
        if a["state"] == "complete":
            detail = {k: a[k] for k in DETAIL_KEYS if k in a}
            lines.append(f"  {name:12s} complete  {a['rows']} rows in {a['num_shards']} shards  {json.dumps(detail)}")
        elif a["state"] == "partial":
            lines.append(f"  {name:12s} partial   {a['shards_done']} shards done ({a['rows']} rows); rerun to resume")
        elif a["state"] == "damaged":
            lines.append(f"  {name:12s} damaged   {a['path']}: {a['reason']}; {a['hint']}")
        else:
            lines.append(f"  {name:12s} not started")
    return "\n".join(lines)


def run_status(root: Path) -> str:
    return format_status(run_status_data(root))


def _short(v: Any, width: int = 80) -> str:
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= width else s[: width - 1] + "…"


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def inspect_data(path: Path, n: int = 5, columns: list[str] | None = None) -> dict[str, Any]:
    path = Path(path)
    art = Artifact(path)
    if path.is_file():
        owner = next((p for p in path.parents if (p / ".megapairs").is_dir()), None)
        raise UserError(f"{path} is a file, not an artifact folder",
                        hint=f"give its folder: `megapairs inspect {owner}`" if owner else
                        "give an artifact folder such as RUN/pairs")
    if not path.is_dir():
        raise UserError(f"{path}: no such folder", hint="give an artifact folder such as RUN/pairs")
    if not art.is_started():
        raise UserError(f"{path}: not an artifact folder (no megapairs metadata)",
                        hint=f"give one of {', '.join(ARTIFACT_ORDER)} inside a run folder")
    out: dict[str, Any] = {"artifact": str(path)}
    if art.is_complete():
        out["state"] = "complete"
        out["manifest"] = art.manifest()
    else:
        out["state"] = "partial"
        out["shards_done"] = len(art.done_shards())
        out["lineage"] = art.lineage()
    rows: list[dict[str, Any]] = []
    for file in art.data_files():
        if len(rows) >= n:
            break
        names = pq.read_schema(file).names
        unknown = [c for c in columns or [] if c not in names]
        if unknown:
            raise UserError(f"{file}: no column {', '.join(map(repr, unknown))}",
                            hint=f"its columns are {', '.join(names)}")
        table = pq.read_table(file, columns=columns)
        rows.extend(_jsonable(r) for r in table.slice(0, n - len(rows)).to_pylist())
    out["rows"] = rows
    return out


def format_inspect(data: dict[str, Any]) -> str:
    out = []
    if data["state"] == "complete":
        m = data["manifest"]
        summary = {k: v for k, v in m.items() if k not in ("score_histograms", "histogram_bins", "schema",
                                                           "similarity_histograms")}
        out.append(json.dumps(summary, indent=2, default=str))
        out.append("schema: " + ", ".join(m.get("schema") or []))
    else:
        out.append(f"incomplete artifact: {data['shards_done']} shards done; lineage {data['lineage']}")
    for i, row in enumerate(data["rows"]):
        out.append(f"--- row {i}")
        out.extend(f"  {k}: {_short(v)}" for k, v in row.items())
    return "\n".join(out)


def inspect_artifact(path: Path, n: int = 5, columns: list[str] | None = None) -> str:
    return format_inspect(inspect_data(path, n, columns))


