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
    ins = result.get("instruction") or {}
    if ins:
        lines.append(f"- instruction: {ins['source']}" + (f" = `{ins['text']}`" if ins.get("text") else ""))
    if result.get("dtype"):
        lines.append(f"- weights dtype: {result['dtype']}")
    if result.get("partial"):
        lines.append(f"- **partial run**: only the first {result['options']['limit']} queries per set")
    if not result["metrics"]:
        lines.append("- no ground truth in this split: see the submission files")
    body = "\n".join(lines) + "\n\n"
    if not result["metrics"]:
        return head + body
    if result["benchmark"] == "triplets":
        return head + body + triplet_table(result)
    col = f"{paper['model']} (paper, {paper['split']}, {paper['source']})" if paper else "paper"
    rows = ["| metric | ours | " + col + " |", "|---|---:|---:|"]
    for k, v in result["metrics"].items():
        rows.append(f"| {k} | {_fmt(v)} | {_fmt(pm.get(k))} |")
    note = ""
    if paper and paper["split"] != result["split"]:
        note = f"\nThe paper's numbers are on the {paper['split']} split; ours are on {result['split']}.\n"
    return head + body + "\n".join(rows) + "\n" + note


def triplet_table(result: dict[str, Any]) -> str:
    """Held-out triplets: the query modes side by side, then composed - image / text with 95 % intervals."""
    m = result["metrics"]
    modes = [mode for mode in ("composed", "image", "text") if any(k.startswith(mode + "/") for k in m)]
    names = list(dict.fromkeys(k.split("/", 1)[1] for k in m))
    rows = ["| metric (%) | " + " | ".join(modes) + " |", "|---|" + "---:|" * len(modes)]
    rows += [f"| {n} | " + " | ".join(_fmt(m.get(f"{mode}/{n}")) for mode in modes) + " |" for n in names]
    boot = result.get("details", {}).get("bootstrap", {})
    if boot:
        rows += ["", "| difference (points, 95 % paired bootstrap) | " + " | ".join(boot) + " |",
                 "|---|" + "---:|" * len(boot)]
        for n in names:
            cells = [f"{b[n]['diff']:+.2f} [{b[n]['low']:+.2f}, {b[n]['high']:+.2f}]" for b in boot.values()]
            rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
