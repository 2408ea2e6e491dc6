"""Tiny pairs and corpus artifacts for the annotation stage tests."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
from PIL import Image

from megapairs.artifacts import Artifact, write_table

CLIPART = Path("/usr/share/openclipart/svg")

SUBJECTS = ["cat", "apple", "bus", "lighthouse", "guitar", "owl", "kite", "bridge"]


def png(i: int, size: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (i * 37 % 256, i * 91 % 256, 120)).save(buf, format="PNG")
    return buf.getvalue()


def _finish(art: Artifact, tables: list[pa.Table], kind: str) -> None:
    art.begin()
    for i, t in enumerate(tables):
        write_table(art.shard_path(i), t)
        art.mark_done(i, t.num_rows, [art.shard_path(i).name])
    art.write_manifest(kind=kind, num_shards=len(tables))


def make_run(root: Path, n_images: int = 16, pairs_per_shard: tuple[int, ...] = (7, 5),
             captions: list[str] | None = None) -> list[tuple[str, str]]:
    """corpus/ with `n_images` captioned PNGs, pairs/ with consecutive-image pairs; returns the pairs."""
    ids = [f"img{i:03d}" for i in range(n_images)]
    corpus = pa.table({
        "id": ids, "uri": [f"mem://{i}.png" for i in ids],
        "caption": captions or [f"a {SUBJECTS[i % 8]} seen in scene number {i}" for i in range(n_images)],
        "label": [SUBJECTS[i % 8] for i in range(n_images)], "status": ["ok"] * n_images,
        "image_bytes": [png(i) for i in range(n_images)],
    })
    _finish(Artifact(root / "corpus", config_hash="corpus-test"), [corpus], "corpus")
    tables, pairs, k = [], [], 0
    for n in pairs_per_shard:
        rows = []
        for _ in range(n):
            q, t = ids[k % n_images], ids[(k + 1) % n_images]
            rows.append({"query_id": q, "target_id": t, "found_by": ["caption"], "best_view": "caption",
                         "best_score": 0.85, "hard_negatives": [q, ids[(k + 2) % n_images]]})
            pairs.append((q, t))
            k += 1
        tables.append(pa.Table.from_pylist(rows))
    _finish(Artifact(root / "pairs", config_hash="pairs-test"), tables, "pairs")
    return pairs


def clipart(rel: str) -> tuple[str, str, bytes]:
    """(caption, path, 192-px render) of a real OpenClipart drawing; skips without openclipart-svg."""
    import pytest

    from megapairs.corpus.images import render_svg
    from megapairs.corpus.svgmeta import svg_caption

    path = CLIPART / rel
    if not path.exists():
        pytest.skip("openclipart-svg is not installed")
    data = path.read_bytes()
    return svg_caption(data), str(path), render_svg(data, 192)
