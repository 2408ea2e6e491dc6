"""A self-contained HTML page showing triplets as pictures: query | target | hard negatives.

The page links the exported images relatively, so it works when the dataset folder is opened from
disk or served as static files, and moves with the folder.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from megapairs.export import layout
from megapairs.export.reader import iter_rows

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.t{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:0 0 1.2em}
.row{display:flex;gap:.6em;flex-wrap:wrap;align-items:flex-start}
figure{margin:0;text-align:center;font-size:.75em}
figure img{width:160px;height:160px;object-fit:contain;background:#eee;border:3px solid #ccc;border-radius:4px}
.q img{border-color:#2b6cb0}.p img{border-color:#2f855a}.n img{border-color:#c53030;width:110px;height:110px}
.meta{color:#666;font-size:.8em;margin-bottom:.4em}ul{margin:.4em 0 .6em}details{font-size:.85em;color:#444}
"""


def _fig(src: str, label: str, cls: str) -> str:
    s = html.escape(src)
    return f'<figure class="{cls}"><a href="{s}"><img src="{s}" loading="lazy" alt="{html.escape(label)}"></a>' \
           f"<figcaption>{html.escape(label)}</figcaption></figure>"


def render_triplet(row: dict[str, Any], split: str) -> str:
    sim = row.get("similarity")
    meta = " · ".join(x for x in [
        split, str(row.get("key") or ""), f"view {row['view']}" if row.get("view") else "",
        f"similarity {sim:.3f}" if isinstance(sim, (int, float)) else "",
        f"writer {row['writer_used']}" if row.get("writer_used") else "",
    ] if x)
    hns = row.get("hns") or []
    figs = [_fig(row["q_img"], "query", "q"), _fig(row["t_img"], "target", "p")]
    figs += [_fig(h, "hns[0] = query" if i == 0 else f"negative {i}", "n") for i, h in enumerate(hns)]
    texts = "".join(f"<li>{html.escape(t)}</li>" for t in row.get("q_text") or [])
    desc = row.get("description")
    captions = " / ".join(html.escape(str(row[c])) for c in ("q_caption", "t_caption") if row.get(c))
    extra = ""
    if desc or captions:
        extra = "<details><summary>relation note and captions</summary>" \
                + (f"<p>{html.escape(desc)}</p>" if desc else "") + (f"<p>{captions}</p>" if captions else "") \
                + "</details>"
    return f'<div class="t"><div class="meta">{html.escape(meta)}</div><ul>{texts}</ul>' \
           f'<div class="row">{"".join(figs)}</div>{extra}</div>'


def render_preview(rows: list[tuple[dict[str, Any], str]], title: str = "MegaPairs triplets") -> str:
    body = "\n".join(render_triplet(r, s) for r, s in rows)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{len(rows)} triplets. Blue: query; green: target; red: hard negatives (the first is the query "
            f"image itself, as in MegaPairs).</p>\n{body}\n</body></html>\n")


def write_preview(folder: Path | str, n: int = 24, split: str | None = None) -> Path:
    """Write `<folder>/preview.html` with the first `n` triplets of `split` (None: train, then validation)."""
    folder = Path(folder)
    picked: list[tuple[dict[str, Any], str]] = []
    for s in ([split] if split else list(layout.SPLITS)):
        if len(picked) >= n:
            break
        try:
            for row, _ in iter_rows(folder, s):
                picked.append((row, s))
                if len(picked) >= n:
                    break
        except FileNotFoundError:
            continue
    path = folder / layout.PREVIEW
    path.write_text(render_preview(picked), encoding="utf-8")
    return path
