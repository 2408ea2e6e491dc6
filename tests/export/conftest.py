"""A small run folder (corpus, pairs, annotations artifacts) built from generated PNGs.

Layout of the fixture: 4 clusters of 5 images (c0..c4). In each cluster, c0 is a query with
targets c1, c2, c3 and hard negatives [c0, the other targets..., c4]. Cluster 0 additionally has
c1 as a query (so the query-target graph is not a star). Special cases, all in cluster 3:
- (c0, c1) has no annotation row;
- (c0, c2) has a failed annotation (status "refused");
- (c0, c3) was written by the template fallback.
Cluster 2's (c0, c2) has only blank instructions. One extra corpus row is unusable ("truncated")
and appears as a hard negative of cluster 1, where it must be filtered out.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from megapairs.artifacts import Artifact, write_table
from megapairs.corpus.stage import SCHEMA as CORPUS_SCHEMA

VIEWS = {"image": "offline:efficientnet-lite0", "visual": "offline:pixels", "caption": "offline:minilm"}
PAIRS_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("target_id", pa.string()), ("found_by", pa.list_(pa.string())),
    ("best_view", pa.string()), ("best_score", pa.float32()),
    *[(f"score_{v}", pa.float32()) for v in VIEWS],
    ("hard_negatives", pa.list_(pa.string())), ("pair_rank", pa.int32()),
])
ANN_SCHEMA = pa.schema([
    ("query_id", pa.string()), ("target_id", pa.string()), ("description", pa.string()),
    ("instructions", pa.list_(pa.string())), ("status", pa.string()), ("reason", pa.string()),
    ("describer", pa.string()), ("writer", pa.string()), ("writer_used", pa.string()),
    ("prompt_version", pa.string()),
])


def _png(seed: int, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _finish(path: Path, kind: str, table: pa.Table, extra: dict) -> None:
    art = Artifact(path, f"hash-{kind}", {})
    art.begin()
    write_table(art.shard_path(0), table)
    art.mark_done(0, table.num_rows, [art.shard_path(0).name])
    art.write_manifest(kind=kind, num_shards=1, extra=extra)


def make_run(root: Path, clusters: int = 4, per_cluster: int = 5) -> dict:
    imgs = root / "images_src"
    imgs.mkdir(parents=True)
    ids: list[list[str]] = []
    corpus_rows = []
    sizes = [(40, 30), (24, 48), (32, 32), (50, 20)]
    for c in range(clusters):
        ids.append([])
        for k in range(per_cluster):
            data = _png(100 * c + k, sizes[(c + k) % len(sizes)])
            p = imgs / f"c{c}_{k}.png"
            p.write_bytes(data)
            i = hashlib.sha256(data).hexdigest()[:32]
            ids[-1].append(i)
            w, h = Image.open(p).size
            corpus_rows.append({"id": i, "uri": str(p), "source": str(p), "label": None,
                                "caption": f"cluster {c} picture {k}", "width": w, "height": h,
                                "format": "PNG", "mode": "RGB", "status": "ok", "reason": None,
                                "note": None, "image_bytes": None})
    bad = "f" * 32
    corpus_rows.append({"id": bad, "uri": str(imgs / "broken.png"), "source": "broken.png", "label": None,
                        "caption": "", "width": None, "height": None, "format": None, "mode": None,
                        "status": "truncated", "reason": "broken data stream", "note": None, "image_bytes": None})
    _finish(root / "corpus", "corpus", pa.Table.from_pylist(corpus_rows, schema=CORPUS_SCHEMA),
            {"source": str(imgs), "usable": len(corpus_rows) - 1})

    pairs, anns = [], []
    rng = np.random.default_rng(0)

    def add_pair(q: str, t: str, others: list[str], rank: int) -> None:
        view = ["image", "visual", "caption"][rank % 3]
        scores = {f"score_{v}": float(rng.uniform(0.8, 0.96)) for v in VIEWS}
        pairs.append({"query_id": q, "target_id": t, "found_by": [view], "best_view": view,
                      "best_score": scores[f"score_{view}"], **scores,
                      "hard_negatives": [q, *others], "pair_rank": rank})

    def add_ann(q: str, t: str, instructions: list[str], status: str = "ok", reason: str | None = None,
                writer_used: str = "llamacpp:gemma3-270m") -> None:
        anns.append({"query_id": q, "target_id": t, "description": f"Both images are noise; {q[:4]} vs {t[:4]}.",
                     "instructions": instructions, "status": status, "reason": reason,
                     "describer": "captions:llamacpp:gemma3-270m", "writer": "llamacpp:gemma3-270m",
                     "writer_used": writer_used, "prompt_version": "v1"})

    for c, cl in enumerate(ids):
        q = cl[0]
        for rank, t in enumerate(cl[1:4]):
            others = [x for x in cl[1:4] if x != t] + [cl[4]] + ([bad] if c == 1 else [])
            add_pair(q, t, others, rank)
            texts = [f"make it like picture {rank} of group {c}", f"same but more {c}", f"shift hue {rank}"]
            if c == 3 and rank == 0:
                continue  # no annotation
            if c == 3 and rank == 1:
                add_ann(q, t, [], status="refused", reason="the model refused to describe")
            elif c == 3 and rank == 2:
                add_ann(q, t, texts, writer_used="template:")
            elif c == 2 and rank == 1:
                add_ann(q, t, ["", "   "])
            else:
                add_ann(q, t, texts)
        if c == 0:
            add_pair(cl[1], cl[4], [cl[2]], 0)
            add_ann(cl[1], cl[4], ["now the other one", "a different take"])
    _finish(root / "pairs", "pairs", pa.Table.from_pylist(pairs, schema=PAIRS_SCHEMA),
            {"views": VIEWS, "bands": {v: [0.8, 0.96] for v in VIEWS}, "band_units": "score"})
    _finish(root / "annotations", "annotations", pa.Table.from_pylist(anns, schema=ANN_SCHEMA),
            {"models": {"describer": "captions:llamacpp:gemma3-270m", "writer": "llamacpp:gemma3-270m"},
             "prompt_version": "v1"})
    return {"ids": ids, "bad": bad, "pairs": len(pairs), "annotations": len(anns)}


@pytest.fixture(scope="session")
def run_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("run")
    info = make_run(root)
    return root, info
