"""Structured fields of corpus rows (the `meta` column: a JSON object per row, or null).

What fills it:
- SVG sources with Dublin Core metadata (OpenClipart): `title`, `keywords` (list), `description`.
- the `icons` source: `kind` ("icon"), `icon_name` (freedesktop name, e.g. "go-up"), `readable_name`
  ("go up arrow"), `theme` (folder name, "gnome-brave"), `theme_name` (index.theme Name=),
  `theme_colour` (the colour a GNOME-Colors theme paints its icons, else null), `theme_variant`
  ("dark" / "light" / null), `colour` (a colour word from the icon name, else the theme colour, else
  null), `context` ("apps", "places", "actions", "status", "devices", ...), `size` (nominal px of the
  chosen folder), `scalable` (an SVG from a scalable folder), `aliases` (other names linked to it),
  `base_name` (the name without colour words: folder-red-music -> folder-music) and `family` (theme
  family: "gnome-colors" for its seven colour themes, else the theme). Two icons with equal family,
  context and base_name are the same drawing in another colour.

Corpora written before the column existed read as {} for every id.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq

from megapairs.artifacts import Artifact


def parse_meta(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        out = json.loads(value)
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def load_meta(corpus: Artifact, usable_only: bool = True) -> dict[str, dict[str, Any]]:
    """Corpus id -> its structured fields (only ids that have some)."""
    out: dict[str, dict[str, Any]] = {}
    for s in corpus.shard_indices():
        if "meta" not in pq.read_schema(corpus.shard_path(s)).names:
            continue  # a corpus written before the column existed
        t = corpus.read_shard(s, columns=["id", "status", "meta"]).to_pydict()
        for i, st, m in zip(t["id"], t["status"], t["meta"]):
            if m and (st == "ok" or not usable_only):
                out[i] = parse_meta(m)
    return out
