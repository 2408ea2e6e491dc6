"""Joining pairs and annotations: drop reasons, negatives, config checks."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from megapairs.configbase import ConfigError
from megapairs.export.cli import build_config
from megapairs.export.config import ExportConfig
from megapairs.export.triplets import clean_instructions, join_triplets, pick_negatives


def test_pick_negatives_query_first_no_target_no_unusable():
    notes = Counter()
    usable = {"q", "t", "a", "b", "c"}
    out = pick_negatives("q", "t", ["q", "a", "t", "x", "a", "b", "c"], usable, 3, notes)
    assert out == ["q", "a", "b"]
    assert notes["negative_was_target"] == 1 and notes["negative_unusable"] == 1
    assert pick_negatives("q", "t", ["a"], usable, 5, notes) == ["q", "a"]
    assert notes["query_not_first_negative"] == 1


def test_clean_instructions():
    assert clean_instructions([" a  b ", "", "a b", None, "c"]) == ["a b", "c"]


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
