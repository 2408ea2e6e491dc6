"""A small HTML page showing mined pairs side by side: images, captions, view and score."""

from __future__ import annotations

import html
import random
from pathlib import Path

from megapairs.artifacts import open_complete
from megapairs.corpus.images import load_image


def _thumb(row: dict, folder: Path, size: int = 192) -> str:
    path = folder / f"{row['id']}.jpg"
    if not path.exists():
        img = load_image(row)
        img.thumbnail((size, size))
        img.save(path, quality=88)
    return f"img/{path.name}"


def pairs_report(root: Path | str, n: int = 40, seed: int = 0, out: Path | str | None = None) -> Path:
    root = Path(root)
    pairs = open_complete(root / "pairs")
    manifest = pairs.manifest()
    rows = pairs.read_all().to_pylist()
    rng = random.Random(seed)
    sample = rng.sample(rows, min(n, len(rows)))
    need = {r["query_id"] for r in sample} | {r["target_id"] for r in sample}
    corpus = {r["id"]: r for t in open_complete(root / "corpus").iter_tables()
              for r in t.to_pylist() if r["id"] in need}
    out = Path(out) if out else root / "report"
    (out / "img").mkdir(parents=True, exist_ok=True)
    cells = []
    for r in sample:
        q, t = corpus[r["query_id"]], corpus[r["target_id"]]
        scores = ", ".join(f"{k[6:]} {r[k]:.3f}" for k in r if k.startswith("score_") and r[k] is not None)
        cells.append(
            f"<tr><td><img src='{_thumb(q, out / 'img')}'><div>{html.escape(q['caption'] or '')}</div>"
            f"<small>{html.escape(q['source'])}</small></td>"
            f"<td><img src='{_thumb(t, out / 'img')}'><div>{html.escape(t['caption'] or '')}</div>"
            f"<small>{html.escape(t['source'])}</small></td>"
            f"<td>found by <b>{', '.join(r['found_by'])}</b><br>{scores}</td></tr>"
        )
    bands = html.escape(str(manifest.get("bands")))
    page = f"""<!doctype html><meta charset="utf-8"><title>megapairs: mined pairs</title>
<style>body{{font-family:sans-serif;margin:2em}} td{{vertical-align:top;padding:8px;border-bottom:1px solid #ddd;max-width:260px}}
img{{max-width:192px;max-height:192px;display:block;border:1px solid #eee}} small{{color:#777}}</style>
<h1>Mined pairs ({len(sample)} of {len(rows)})</h1>
<p>views: {html.escape(str(manifest.get('views')))}<br>bands: {bands}<br>pairs by view: {html.escape(str(manifest.get('pairs_by_view')))}</p>
<table><tr><th>query</th><th>target</th><th>provenance</th></tr>{''.join(cells)}</table>"""
    path = out / "pairs.html"
    path.write_text(page)
    return path
