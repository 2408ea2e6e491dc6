"""Markdown report: our numbers beside the paper's for the same model."""

from __future__ import annotations

import json
from typing import Any


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else ("–" if v is None else str(v))


def markdown(result: dict[str, Any]) -> str:
    paper = result.get("paper") or {}
    pm = paper.get("metrics", {})
    head = f"# {result['benchmark']} ({result['split']}): {result['model']}\n\n"
    tpl = result["template"]
    fmt = tpl["format"] if isinstance(tpl["format"], str) else json.dumps(tpl["format"])
    lines = [
        f"- template: `{tpl['name']}` = `{fmt}`",
        f"- reference image: {result['reference_policy']}",
        f"- queries: {result['num_queries']}; gallery: {result['gallery_size']}",
        f"- preprocess_id: `{result['preprocess_id']}`",
    ]
    if result.get("partial"):
        lines.append(f"- **partial run**: only the first {result['options']['limit']} queries per set")
    if not result["metrics"]:
        lines.append("- no ground truth in this split: see the submission files")
    body = "\n".join(lines) + "\n\n"
    if not result["metrics"]:
        return head + body
    col = f"{paper['model']} (paper, {paper['split']}, {paper['source']})" if paper else "paper"
    rows = ["| metric | ours | " + col + " |", "|---|---:|---:|"]
    for k, v in result["metrics"].items():
        rows.append(f"| {k} | {_fmt(v)} | {_fmt(pm.get(k))} |")
    note = ""
    if paper and paper["split"] != result["split"]:
        note = f"\nThe paper's numbers are on the {paper['split']} split; ours are on {result['split']}.\n"
    return head + body + "\n".join(rows) + "\n" + note
