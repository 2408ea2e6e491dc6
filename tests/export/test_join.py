"""Joining pairs and annotations: drop reasons, negatives, config checks."""

from __future__ import annotations

from collections import Counter

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from megapairs.configbase import ConfigError
from megapairs.export.cli import build_config
from megapairs.export.config import ExportConfig
from megapairs.export.columns import clean_instruction_lists, pick_negative_codes
from megapairs.export.plan import make_plan, row_table
from megapairs.artifacts import open_complete
from tests.export.test_plan_columns import _artifact


def test_pick_negatives_query_first_no_target_no_unusable():
    notes = Counter()
    vocab = pa.array(["a", "b", "c", "q", "t", "x"])
    usable = np.array([True, True, True, True, True, False])
    q, t = np.array([3, 3]), np.array([4, 4])
    mined = pa.array([["q", "a", "t", "x", "a", "b", "c"], ["a"]], pa.list_(pa.string()))
    flat, offsets = pick_negative_codes(mined, q, t, vocab, usable, 3, notes)
    assert [vocab.take(pa.array(flat[offsets[i]:offsets[i + 1]])).to_pylist() for i in range(2)] == [
        ["q", "a", "b"], ["q", "a"]]
    assert notes["negative_was_target"] == 1 and notes["negative_unusable"] == 1
    assert notes["query_not_first_negative"] == 1 and notes["fewer_negatives_than_asked"] == 1


def test_clean_instructions():
    lists, counts = clean_instruction_lists(pa.array([[" a  b ", "", "a\u3000b", None, "c"], None, ["\t"]]))
    assert lists.to_pylist() == [["a b", "c"], [], []] and counts.tolist() == [2, 0, 0]


def _tables(ann_rows):
    pairs = pa.Table.from_pylist([
        {"query_id": "q", "target_id": "t", "best_view": "image", "best_score": 0.9, "found_by": ["image"],
         "hard_negatives": ["q", "n"], "pair_rank": 0, "score_image": 0.9},
        {"query_id": "q", "target_id": "u", "best_view": "image", "best_score": 0.85, "found_by": ["image"],
         "hard_negatives": ["q", "t"], "pair_rank": 1, "score_image": 0.85},
    ])
    return pairs, pa.Table.from_pylist(ann_rows)


def _ann(t, status="ok", instructions=("a", "b", "c"), writer_used="hf:x"):
    return {"query_id": "q", "target_id": t, "description": "d", "instructions": list(instructions),
            "status": status, "reason": "why" if status != "ok" else None, "describer": "d:",
            "writer": "hf:x", "writer_used": writer_used, "prompt_version": "v1"}


def join_triplets(pairs: pa.Table, ann: pa.Table, caps: dict, cfg: ExportConfig):
    """The plan's join of these tables (with a corpus whose usable ids are `caps`); its rows as dicts."""
    from megapairs.export.writers import triplet_schema

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = pa.table({"id": list(caps), "status": ["ok"] * len(caps), "caption": list(caps.values())})
        for name, table in (("corpus", corpus), ("pairs", pairs), ("annotations", ann)):
            _artifact(root / name, name, [table])
        plan = make_plan(*(open_complete(root / n) for n in ("corpus", "pairs", "annotations")), cfg, root / "x")
        plan.triplets = row_table(plan, np.arange(len(plan.q)), triplet_schema(plan.score_columns), "jpg").to_pylist()
    return plan


def test_join_counts_reasons():
    caps = {"q": "cq", "t": "ct", "u": "cu", "n": "cn"}
    pairs, ann = _tables([_ann("t"), _ann("u", status="parse_error")])
    res = join_triplets(pairs, ann, caps, ExportConfig())
    assert [t["t_id"] for t in res.triplets] == ["t"]
    assert res.dropped == Counter(annotation_failed=1)
    assert res.annotation_status == Counter(ok=1, parse_error=1)
    assert res.failure_examples == {"parse_error": "why"}
    t = res.triplets[0]
    assert t["hn_ids"] == ["q", "n"] and t["q_caption"] == "cq" and t["score_image"] == pytest.approx(0.9)
    # include_failed keeps failed rows that still have instructions
    res = join_triplets(pairs, ann, caps, ExportConfig(include_failed=True))
    assert len(res.triplets) == 2
    # writer exclusion, instruction minimum, unusable target
    pairs, ann = _tables([_ann("t", writer_used="template:"), _ann("u", instructions=["only one"])])
    res = join_triplets(pairs, ann, caps, ExportConfig(exclude_writers=["template:"], min_instructions=2))
    assert res.dropped == Counter(writer_excluded=1, too_few_instructions=1)
    pairs, ann = _tables([_ann("t")])
    res = join_triplets(pairs, ann, {"q": "", "n": ""}, ExportConfig())
    assert res.dropped == Counter(target_unusable=1, no_annotation=1)


def test_config_validation_and_overrides():
    with pytest.raises(ConfigError, match="formats"):
        ExportConfig(formats=["csv"])
    with pytest.raises(ConfigError, match="val_fraction"):
        ExportConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="num_hard_negatives"):
        ExportConfig(num_hard_negatives=0)
    with pytest.raises(ConfigError, match="resize"):
        ExportConfig(resize="squash")
    c = build_config(["image_size=512", "export.formats=[parquet, webdataset]", "resize=pad"])
    assert c.image_size == 512 and c.formats == ["parquet", "webdataset"] and c.resize == "pad"
    # presentation knobs do not change the identity of the output
    assert ExportConfig(preview_count=3).config_hash() == ExportConfig().config_hash()
    assert ExportConfig(seed=1).config_hash() != ExportConfig().config_hash()
