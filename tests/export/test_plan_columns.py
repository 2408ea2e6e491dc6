"""The columnar export plan gives what the row-by-row plan of 0.2 gave (tests/export/_reference.py):
same rows in the same order, same shards, same image owners, same counts, on random inputs full of
the cases the rules name (duplicates, failed and blank annotations, unusable and target negatives,
odd whitespace), and on the fixture run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megapairs.artifacts import Artifact, write_table
from megapairs.corpus.stage import SCHEMA as CORPUS_SCHEMA
from megapairs.export import ExportConfig, ExportStage
from tests.export import _reference as ref
from tests.export.conftest import ANN_SCHEMA, PAIRS_SCHEMA

WHITESPACE = [" ", "  ", "\t", "\n", "\u3000", "\xa0", "\x1c", "\u2003"]


def _artifact(path: Path, kind: str, tables: list[pa.Table]) -> None:
    art = Artifact(path, f"hash-{kind}", {})
    art.begin()
    for i, t in enumerate(tables):
        write_table(art.shard_path(i), t)
        art.mark_done(i, t.num_rows, [art.shard_path(i).name])
    art.write_manifest(kind=kind, num_shards=len(tables), extra={})


def _text(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return None
    words = [rng.choice(["red", "blue", "a", "cat", "é"]) for _ in range(rng.choice([0, 1, 2, 3, 3]))]
    ws = lambda: "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(0, 2)))  # noqa: E731
    return ws() + "".join(w + (ws() or " ") for w in words) + ws()


def random_run(root: Path, seed: int) -> list[pa.Table]:
    """A corpus (two shards, repeated ids, unusable rows), pairs and annotations, all in Parquet."""
    rng = random.Random(seed)
    n_img = rng.randint(8, 60)
    ids = [f"{rng.getrandbits(64):016x}"[: rng.choice([6, 16])] + f"{i:02d}" for i in range(n_img)]
    corpus = []
    for i in ids + rng.sample(ids, n_img // 5):  # repeats: the first usable row counts
        st = "ok" if rng.random() < 0.85 else "truncated"
        corpus.append({"id": i, "uri": f"/x/{i}.png", "source": "x", "label": None,
                       "caption": rng.choice([None, f"cap {i}", ""]), "width": 8, "height": 8, "format": "PNG",
                       "mode": "RGB", "status": st, "reason": None, "note": None, "image_bytes": None})
    half = len(corpus) // 2
    shards = [pa.Table.from_pylist(corpus[:half], schema=CORPUS_SCHEMA),
              pa.Table.from_pylist(corpus[half:], schema=CORPUS_SCHEMA)]
    _artifact(root / "corpus", "corpus", shards)
    pairs, anns = [], []
    for _ in range(rng.randint(0, 300)):
        q, t = rng.choice(ids), rng.choice(ids)
        mined = [q] * (rng.random() < 0.9) + [rng.choice(ids + ["gone", None]) for _ in range(rng.randint(0, 7))]
        score = lambda: rng.choice([None, rng.uniform(0.5, 1.0)])  # noqa: E731
        pairs.append({"query_id": q, "target_id": t, "found_by": rng.choice([None, [], ["image"], ["visual", "image"],
                                                                             ["image", "visual"]]),
                      "best_view": rng.choice([None, "", "image", "visual", "caption"]), "best_score": score(),
                      "score_image": score(), "score_visual": score(), "score_caption": score(),
                      "hard_negatives": rng.choice([None, mined]), "pair_rank": rng.choice([None, 0, 1, 2, 3])})
        if rng.random() < 0.1:
            pairs.append(dict(pairs[-1], pair_rank=9))  # a duplicate pair
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            anns.append({"query_id": q, "target_id": t, "description": rng.choice([None, "d"]),
                         "instructions": None if rng.random() < 0.05 else [_text(rng) for _ in range(rng.randint(0, 5))],
                         "status": rng.choice([None, "ok", "ok", "ok", "ok", "ok", "refused", "parse_error"]),
                         "reason": rng.choice([None, "", f"because {rng.random():.3f}"]),
                         "describer": rng.choice(["d1", None]), "writer": "w",
                         "writer_used": rng.choice([None, "template:", "hf:x", "llamacpp:y", "llamacpp:y"]),
                         "prompt_version": rng.choice(["v1", "v2", None])})
    anns.append({"query_id": "nobody", "target_id": ids[0], "instructions": ["x"], "status": "ok"})
    rng.shuffle(anns)
    _artifact(root / "pairs", "pairs", [pa.Table.from_pylist(pairs, schema=PAIRS_SCHEMA)])
    _artifact(root / "annotations", "annotations", [pa.Table.from_pylist(anns, schema=ANN_SCHEMA)])
    return shards


def check_plan_matches_reference(root: Path, out: Path, corpus_shards: list[pa.Table], cfg: ExportConfig) -> dict:
    stage = ExportStage(root, cfg, output=out)
    stage._make_plan()
    plan = out / "_plan"
    pairs = pq.read_table(root / "pairs")
    ann = pq.read_table(root / "annotations")
    by_split, tasks, images, stats = ref.reference_plan(corpus_shards, pairs, ann, cfg)
    rows = pq.read_table(plan / "triplets.parquet").to_pylist()
    assert rows == [r for s in by_split.values() for r in s]
    assert json.loads((plan / "tasks.json").read_text()) == tasks
    assert pq.read_table(plan / "images.parquet").to_pylist() == images
    assert json.loads((plan / "stats.json").read_text()) == json.loads(json.dumps(stats))
    assert not (plan / "inputs").exists()  # the mapped copies of the inputs go once the plan is frozen
    return stats


@pytest.mark.parametrize("case", range(16))
def test_columnar_plan_equals_row_by_row_plan(tmp_path, case):
    shards = random_run(tmp_path / "run", case)
    rng = random.Random(100 + case)
    cfg = ExportConfig(val_fraction=rng.choice([0.0, 0.1, 0.3]), seed=rng.randint(0, 3),
                       shard_size=rng.choice([1, 3, 7, 1000]), shuffle=rng.random() < 0.7,
                       num_hard_negatives=rng.choice([1, 2, 5]), min_instructions=rng.choice([1, 2]),
                       include_failed=rng.random() < 0.3, exclude_writers=rng.choice([[], [], ["template:"], ["hf", "llama"]]))
    check_plan_matches_reference(tmp_path / "run", tmp_path / "out", shards, cfg)


def test_fixture_run_plan_equals_row_by_row_plan(run_root, tmp_path):
    root, _ = run_root
    stats = check_plan_matches_reference(root, tmp_path / "out", [pq.read_table(root / "corpus")],
                                         ExportConfig(val_fraction=0.25, shard_size=3))
    assert stats["triplets"] == 10 and stats["dropped"]["no_annotation"] == 1


def test_take_rows_gathers_chunk_by_chunk_in_the_asked_order():
    import numpy as np

    from megapairs.export.columns import take_rows

    rng = np.random.default_rng(0)
    col = pa.chunked_array([pa.array([[f"{k}-{i}"] * (i % 3) for i in range(n)], pa.list_(pa.string()))
                            for k, n in enumerate([5, 0, 7, 1, 9])])
    for idx in (rng.integers(0, len(col), 40), np.arange(len(col)), np.array([], np.int64), np.array([21, 0, 21])):
        assert take_rows(col, idx).to_pylist() == col.take(pa.array(idx, pa.int64())).to_pylist()
