"""`megapairs status RUN` and `megapairs inspect ARTIFACT`: human-readable views of the run folder."""

from __future__ import annotations

import json
from pathlib import Path

from megapairs.artifacts import LINEAGE, Artifact, read_json

ARTIFACT_ORDER = ["corpus", "embeddings", "pairs", "annotations", "dataset"]


def run_status(root: Path) -> str:
    if not root.is_dir():
        return f"{root}: no such run folder"
    lines = [f"run {root}"]
    names = ARTIFACT_ORDER + sorted(p.name for p in root.iterdir()
                                    if p.is_dir() and (p / LINEAGE).exists() and p.name not in ARTIFACT_ORDER)
    for name in names:
        art = Artifact(root / name)
        if not (art.path / LINEAGE).exists():
            lines.append(f"  {name:12s} not started")
            continue
        if art.is_complete():
            m = art.manifest()
            detail = {k: m[k] for k in ("status_counts", "pairs_by_view", "status", "views") if k in m}
            if "views" in detail and isinstance(detail["views"], dict):
                detail["views"] = {k: (v["spec"] if isinstance(v, dict) else v) for k, v in detail["views"].items()}
            lines.append(f"  {name:12s} complete  {m['rows']} rows in {m['num_shards']} shards  {json.dumps(detail)}")
        else:
            done = art.done_shards()
            rows = sum(art.marker(i)["rows"] for i in done)
            lines.append(f"  {name:12s} partial   {len(done)} shards done ({rows} rows); rerun to resume")
    return "\n".join(lines)


def _short(v, width: int = 80):
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= width else s[: width - 1] + "…"


def inspect_artifact(path: Path, n: int = 5, columns: list[str] | None = None) -> str:
    art = Artifact(path)
    out = []
    if art.is_complete():
        m = art.manifest()
        summary = {k: v for k, v in m.items() if k not in ("score_histograms", "histogram_bins", "schema")}
        out.append(json.dumps(summary, indent=2, default=str))
        out.append("schema: " + ", ".join(m.get("schema") or []))
    elif (path / LINEAGE).exists():
        out.append(f"incomplete artifact: {len(art.done_shards())} shards done; lineage {read_json(path / LINEAGE)}")
    else:
        return f"{path}: not an artifact folder (no {LINEAGE})"
    shown = 0
    for i in art.shard_indices():
        for row in art.read_shard(i, columns).to_pylist():
            out.append(f"--- row {shown}")
            out.extend(f"  {k}: {_short(v)}" for k, v in row.items())
            shown += 1
            if shown >= n:
                return "\n".join(out)
    return "\n".join(out)
