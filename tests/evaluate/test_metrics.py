"""Metric definitions against hand-worked values and a second, naive implementation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from megapairs.evaluate import metrics as M
from megapairs.evaluate.paper_numbers import PAPER_NUMBERS, guess_model, lookup


def naive_ap(ranking, gts, k):
    """AP@k straight from the definition, with plain loops (independent of metrics.py)."""
    total, hits = 0.0, 0
    for i, x in enumerate(ranking[:k], start=1):
        if x in gts:
            hits += 1
            total += hits / i
    return total / min(len(gts), k)


def test_ap_by_hand():
    # GT {a,b,c,d}; hits at ranks 1, 3, 5: P(1)=1, P(3)=2/3, P(5)=3/5
    ranking = ["a", "x", "b", "y", "c"]
    gts = {"a", "b", "c", "d"}
    assert M.average_precision_at_k(ranking, gts, 5) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    assert M.average_precision_at_k(ranking, gts, 2) == pytest.approx(1 / 2)  # one hit, / min(4, 2)
    # ranking shorter than k: missing positions are misses; divisor min(|GT|, k) = 4
    assert M.average_precision_at_k(ranking, gts, 10) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)


def test_ap_fewer_gts_than_k():
    # single GT at rank 2: AP@5 = P(2) * 1 / min(1, 5) = 1/2
    assert M.average_precision_at_k(["a", "b", "c", "d", "e"], {"b"}, 5) == pytest.approx(0.5)
    # two GTs, both at the top: perfect AP@50 even though k >> |GT|
    assert M.average_precision_at_k(["b", "a", "c"], {"a", "b"}, 50) == pytest.approx(1.0)


def test_circo_map_matches_naive_on_random_rankings():
    rng = np.random.default_rng(0)
    rankings, gts = [], []
    for _ in range(40):
        rankings.append(list(rng.permutation(200)[:50]))
        gts.append(list(rng.choice(200, size=int(rng.integers(1, 9)), replace=False)))
    got = M.circo_map(rankings, gts)
    for k in (5, 10, 25, 50):
        want = 100 * np.mean([naive_ap(r, set(g), k) for r, g in zip(rankings, gts)])
        assert got[f"mAP@{k}"] == pytest.approx(want)


def test_circo_map_from_official_file(tmp_path: Path):
    """Two queries in the CIRCO val format, rankings written by hand."""
    ann = [{"id": 0, "reference_img_id": 9, "target_img_id": 1, "relative_caption": "r", "shared_concept": "s",
            "gt_img_ids": [1, 2, 3]},
           {"id": 1, "reference_img_id": 8, "target_img_id": 4, "relative_caption": "r", "shared_concept": "s",
            "gt_img_ids": [4]}]
    (tmp_path / "val.json").write_text(json.dumps(ann))
    rows = json.loads((tmp_path / "val.json").read_text())
    preds = {0: [9, 1, 5, 2, 6], 1: [4, 7, 6, 5, 3]}
    # q0: hits at 2 (P=1/2) and 4 (P=2/4) -> AP@5 = 1/3; q1: hit at 1 -> AP@5 = 1
    res = M.circo_map([preds[r["id"]] for r in rows], [r["gt_img_ids"] for r in rows], ks=(5,))
    assert res["mAP@5"] == pytest.approx(100 * (1 / 3 + 1) / 2)
    rec = M.recall_at_k([preds[r["id"]] for r in rows], [r["target_img_id"] for r in rows], ks=(1, 2))
    assert rec == {"R@1": 50.0, "R@2": 100.0}


def test_duplicate_predictions_rejected():
    with pytest.raises(ValueError, match="twice"):
        M.circo_map([[1, 2, 1]], [[1]])


def test_reference_policy():
    ranking = ["ref", "t", "x"]
    assert M.recall_at_k([M.apply_reference_policy(ranking, "ref", "keep")], ["t"], ks=(1,)) == {"R@1": 0.0}
    assert M.recall_at_k([M.apply_reference_policy(ranking, "ref", "remove")], ["t"], ks=(1,)) == {"R@1": 100.0}
    with pytest.raises(ValueError):
        M.apply_reference_policy(ranking, "ref", "drop")


def test_stable_rank_breaks_ties_by_gallery_order():
    assert list(M.stable_rank(np.array([0.1, 0.5, 0.5, 0.9, 0.5]))) == [3, 1, 2, 4, 0]
    assert M.stable_rank(np.array([[1.0, 1.0], [0.0, 2.0]])).tolist() == [[0, 1], [1, 0]]


def test_recall_with_target_sets():
    assert M.recall_at_k([["a", "b"], ["c", "d"]], [{"x", "b"}, {"y"}], ks=(1, 2)) == {"R@1": 0.0, "R@2": 50.0}


def test_cirr_recall_subset_from_official_rows():
    members = ["m0", "m1", "m2", "m3", "m4", "m5"]
    rows = [{"pairid": 1, "reference": "m2", "target_hard": "m4", "img_set": {"id": 1, "members": members}},
            {"pairid": 2, "reference": "m0", "target_hard": "m1", "img_set": {"id": 1, "members": members}}]
    # q1: reference m2 scores highest but is left out; among the rest m4 (0.8) is first -> R_s@1 hit
    # q2: reference m0 left out; m5 (0.9) first, then the 0.7 tie m1/m3 -> gallery order -> m1 second
    scores = [np.array([0.1, 0.2, 0.99, 0.3, 0.8, 0.4]), np.array([0.95, 0.7, 0.1, 0.7, 0.2, 0.9])]
    res = M.cirr_recall_subset(scores, [r["img_set"]["members"] for r in rows], [r["reference"] for r in rows],
                               [r["target_hard"] for r in rows])
    assert res == {"Rsubset@1": 50.0, "Rsubset@2": 100.0, "Rsubset@3": 100.0}
    assert M.subset_ranking(scores[1], members, "m0") == ["m5", "m1", "m3", "m4", "m2"]


def test_fashioniq_average_is_mean_of_categories():
    per = {"dress": {"R@10": 10.0, "R@50": 40.0}, "shirt": {"R@10": 20.0, "R@50": 50.0},
           "toptee": {"R@10": 60.0, "R@50": 90.0}}
    out = M.fashioniq_summary(per)
    assert out["avg/R@10"] == pytest.approx(30.0) and out["avg/R@50"] == pytest.approx(60.0)
    assert out["shirt/R@50"] == 50.0


def test_genecis_local_recall_and_ties():
    # target is candidate 0; q0 ties with candidate 1 -> gallery order -> rank 0;
    # q1 target third (0.4 < 0.5 = 0.5) -> rank 2 (stable among the tied two)
    scores = [np.array([0.5, 0.5, 0.1]), np.array([0.4, 0.5, 0.5, 0.1])]
    assert M.local_recall(scores, 0, (1, 2, 3), ties="official") == {"R@1": 50.0, "R@2": 50.0, "R@3": 100.0}
    assert M.local_recall(scores, 0, (1, 2, 3)) == M.local_recall(scores, 0, (1, 2, 3), ties="official")  # default
    # pessimistic: the tie in q0 counts against the target (rank 1)
    assert M.local_recall(scores, 0, (1, 2, 3), ties="pessimistic") == {"R@1": 0.0, "R@2": 50.0, "R@3": 100.0}
    # random tie-breaking: q0 is first with probability 1/2
    assert M.local_recall(scores, 0, (1, 2, 3), ties="expected") == {"R@1": 25.0, "R@2": 50.0, "R@3": 100.0}
    summary = M.genecis_summary({"a": {"R@1": 10.0}, "b": {"R@1": 30.0}})
    assert summary["avg/R@1"] == pytest.approx(20.0)


def test_mmeb_precision_and_summary():
    scores = [np.array([0.3, 0.3]), np.array([0.1, 0.2]), np.array([0.9, 0.2])]
    assert M.precision_at_1(scores, ties="official") == pytest.approx(100 * 2 / 3)  # np.argmax: tie to the first
    assert M.precision_at_1(scores) == pytest.approx(100 * 2 / 3)  # the default is the official rule
    assert M.precision_at_1(scores, ties="pessimistic") == pytest.approx(100 / 3)  # the tie is a miss
    out = M.mmeb_summary({"ImageNet-1K": 50.0, "Place365": 30.0, "CIRR": 70.0})
    assert out["Classification"] == pytest.approx(40.0)
    assert out["Retrieval"] == 70.0 and "VQA" not in out
    assert out["IND"] == pytest.approx(60.0) and out["OOD"] == 30.0
    assert out["Overall"] == pytest.approx(50.0)


@pytest.mark.parametrize("model", ["BGE-VL-MLLM-S1", "BGE-VL-MLLM-S2"])
def test_paper_mmeb_tables_are_consistent(model):
    """Averaging the transcribed Table 10 values reproduces the printed meta-task/overall numbers."""
    e = PAPER_NUMBERS[model]["mmeb"]["metrics"]
    per = {d: e[d] for ds in M.MMEB_META.values() for d in ds}
    summary = M.mmeb_summary(per)
    for key in ("Classification", "VQA", "Retrieval", "Grounding", "IND", "OOD", "Overall"):
        assert summary[key] == pytest.approx(e[key], abs=0.06)


def test_paper_model_lookup():
    assert guess_model("clip:BAAI/BGE-VL-large") == "BGE-VL-large"
    assert guess_model("mllm:JUNJIE99/MMRet-MLLM-S1") == "BGE-VL-MLLM-S1"
    assert guess_model("offline:default") is None
    assert lookup("bge-vl-base", "circo")["metrics"]["mAP@5"] == 34.3
    assert lookup(None, "circo") is None
