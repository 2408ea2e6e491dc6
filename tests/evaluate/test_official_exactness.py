"""Tricky inputs where our numbers must equal what the benchmarks' own code prints. Each official
computation is re-derived here from its semantics (our own loops, not a copy of the official code):

- CIRCO `src/evaluation.py::compute_metrics`: empty / repeated ground truth, fixed semantic aspects;
- CIRPLANT `eval_test_prepare_step_CIRR` + `eval_test_scoring_step_CIRR`: the reference kept at the
  row minimum, recall and subset recall on the soft labels;
- GeneCIS `validate` (torch sort, descending) and VLM2Vec `eval.py` (`np.argmax`, `zip`) with NaN;
- FashionIQ's (R@10 + R@50) / 2 (CLIP4Cir's "average_recall").
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from megapairs.errors import UserError
from megapairs.evaluate import evaluate
from megapairs.evaluate import metrics as M
from megapairs.evaluate.circo import SEMANTIC_ASPECTS, semantic_map
from megapairs.evaluate.mmeb import candidates
from megapairs.evaluate.search import search


class ConstantRetriever:
    """Every input gets the same unit vector, so every score ties."""

    spec, preprocess_id = "constant:exact", "constant-exact"

    def encode(self, images=None, text=None):
        n = len(images) if isinstance(images, (list, tuple)) else len(text) if isinstance(text, (list, tuple)) else 1
        return torch.full((n, 4), 0.5)  # (n, 4), norm 1


def opts(tmp_path: Path, **kw) -> dict:
    return {"cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "out"), "progress": False, **kw}


# -- CIRCO -------------------------------------------------------------------------------------------
def circo_official(preds: list[list[int]], gts: list[list[int]], aspects: list[list[str]], ranks=(5, 10, 25, 50)):
    """compute_metrics' semantics: per query precision at each GT hit; AP@k = sum of the first k over
    min(len(gt as listed), k), numpy division (0 / 0 = NaN); means over queries; the nine aspects."""
    aps: dict[int, list[float]] = {k: [] for k in ranks}
    sem: dict[str, list[float]] = {}
    for p, g, tags in zip(preds, gts, aspects):
        hit = [1.0 if x in g else 0.0 for x in p]
        prec = [hit[i] * sum(hit[: i + 1]) / (i + 1) for i in range(len(p))]
        for k in ranks:
            with np.errstate(invalid="ignore", divide="ignore"):
                aps[k].append(float(np.float64(sum(prec[:k])) / min(len(g), k)))
        for t in tags:
            with np.errstate(invalid="ignore", divide="ignore"):
                sem.setdefault(t, []).append(float(np.float64(sum(prec[:10])) / min(len(g), 10)))
    mean = lambda v: float("nan") if not v else 100 * sum(v) / len(v)  # noqa: E731  (np.mean of [] is NaN)
    return {f"mAP@{k}": mean(aps[k]) for k in ranks}, {a: mean(sem.get(a, [])) for a in SEMANTIC_ASPECTS}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_circo_empty_ground_truth_gives_nan_like_the_official_script(caplog):
    preds = [[5, 6, 7], [1, 2, 3]]
    gts = [[], [2, 2, 9]]  # an empty list; a repeated id (counted twice in the divisor)
    want, _ = circo_official(preds, gts, [[], []])
    with caplog.at_level(logging.WARNING, logger="megapairs"):
        got = M.circo_map(preds, gts)  # the old code raised ValueError here
    assert all(math.isnan(got[k]) for k in want) and all(math.isnan(want[k]) for k in want)
    assert "empty gt_img_ids" in caplog.text
    assert M.circo_map(preds[1:], gts[1:]) == pytest.approx(circo_official(preds[1:], gts[1:], [[]])[0])


def test_circo_more_ground_truths_than_k_and_short_rankings():
    rng = np.random.default_rng(3)
    preds = [list(rng.permutation(60)[: int(rng.integers(1, 55))]) for _ in range(30)]
    gts = [list(rng.integers(0, 60, size=int(rng.integers(1, 70)))) for _ in range(30)]  # repeats, > k
    want, _ = circo_official(preds, gts, [[]] * 30)
    got = M.circo_map(preds, gts)
    assert all(same(got[k], want[k]) for k in want)


def test_circo_semantic_aspects_are_the_official_nine_with_nan(caplog):
    preds = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    gts = [[2], [4, 9], [1]]
    tags = [["cardinality", "cardinality"], ["viewpoint", "made_up"], ["cardinality"]]  # repeat, unknown tag
    _, want = circo_official(preds, gts, tags)
    with caplog.at_level(logging.WARNING, logger="megapairs"):
        got = semantic_map(preds, gts, tags)
    assert list(got) == list(SEMANTIC_ASPECTS)  # the official order; "made_up" is not reported
    assert all(same(got[a], want[a]) for a in SEMANTIC_ASPECTS)
    assert got["cardinality"] == pytest.approx(100 * (0.5 + 0.5 + 0) / 3)  # the repeated tag counts twice
    assert math.isnan(got["negation"])
    assert "made_up" in caplog.text and "negation" in caplog.text


# -- CIRR (CIRPLANT) ---------------------------------------------------------------------------------
def cirplant(sims: np.ndarray, refs: list[int], soft: list[dict[int, float]], members: list[list[int]],
             ks=(1, 2, 5, 10), subset_ks=(1, 2, 3)) -> dict[str, float]:
    """CIRPLANT: the reference's score becomes the row minimum, the row is argsorted (ties here by
    index), recall = mean of the best soft label in the top k (floored at 0), the subset ranking =
    the full ranking filtered to the members other than the reference."""
    out = {}
    ranked = []
    for i, row in enumerate(sims.astype(np.float64).copy()):
        row[refs[i]] = row.min()
        ranked.append(sorted(range(len(row)), key=lambda j: (-row[j], j)))
    for k in ks:
        out[f"soft/R@{k}"] = 100 * sum(max([0.0] + [v for t, v in soft[i].items() if t in r[:k]])
                                       for i, r in enumerate(ranked)) / len(ranked)
    for k in subset_ks:
        sub = [[j for j in r if j in members[i] and j != refs[i]] for i, r in enumerate(ranked)]
        out[f"soft/Rsubset@{k}"] = 100 * sum(max([0.0] + [v for t, v in soft[i].items() if t in s[:k]])
                                             for i, s in enumerate(sub)) / len(sub)
    return out


def test_search_demote_keeps_the_reference_at_the_row_minimum():
    g = np.eye(4, dtype=np.float32)
    q = np.array([[0.9, 0.1, 0.2, 0.0]], dtype=np.float32)  # scores 0.9, 0.1, 0.2, 0.0
    assert search(q, g, 4, demote=[0])[0].tolist() == [2, 1, 0, 3]  # 0 -> min 0.0, ties by index
    assert search(q, g, 3, demote=[0])[0].tolist() == [2, 1, 0]  # k = N - 1: the reference takes a slot
    assert search(q, g, 3, exclude=[0])[0].tolist() == [2, 1, 3]  # deleting it (SEARLE) differs here
    assert search(q, g, 4, demote=[3])[0].tolist() == [0, 2, 1, 3]  # already the minimum: unchanged


def test_cirr_default_is_cirplant_reference_handling(cirr_dir: Path, tmp_path: Path):
    """All scores tie, so the reference keeps its gallery place: pair 1's reference is gallery image 0
    and takes R@1 (CIRPLANT), where deleting it would have given a hit."""
    res = evaluate("cirr", cirr_dir, ConstantRetriever(), opts(tmp_path))
    names = list(json.loads((cirr_dir / "image_splits" / "split.rc2.val.json").read_text()))
    caps = json.loads((cirr_dir / "captions" / "cap.rc2.val.json").read_text())
    idx = {n: i for i, n in enumerate(names)}
    want = cirplant(np.zeros((len(caps), len(names))), [idx[c["reference"]] for c in caps],
                    [{idx[t]: v for t, v in c["target_soft"].items()} for c in caps],
                    [[idx[m] for m in c["img_set"]["members"]] for c in caps])
    assert res["reference_policy"] == "min"
    for key, value in want.items():
        assert res["metrics"][key] == pytest.approx(value), key
    assert res["metrics"]["R@1"] == 0.0 and res["metrics"]["R@2"] == pytest.approx(100 / 3)
    removed = evaluate("cirr", cirr_dir, ConstantRetriever(), opts(tmp_path, reference_policy="remove"))
    assert removed["metrics"]["R@1"] == pytest.approx(100 / 3)  # the old default


def test_cirplant_soft_labels_on_the_reference_count_when_it_is_reached():
    sims = np.array([[0.1, 0.5, 0.3]])
    got = M.soft_recall_at_k([[1, 2, 0]], [{0: 1.0, 2: 0.5}], (1, 2, 3))  # the ranking CIRPLANT builds
    want = cirplant(sims, [0], [{0: 1.0, 2: 0.5}], [[0, 1, 2]], ks=(1, 2, 3), subset_ks=())
    assert {f"soft/{k}": v for k, v in got.items()} == pytest.approx(want)
    ranked = search(np.array([[0.1, 0.5, 0.3]], dtype=np.float32), np.eye(3, dtype=np.float32), 3, demote=[0])
    assert ranked[0].tolist() == [1, 2, 0]


# -- FashionIQ ---------------------------------------------------------------------------------------
def test_fashioniq_reports_the_mean_of_r10_and_r50(fiq_dir: Path, retriever, tmp_path: Path):
    m = evaluate("fashioniq", fiq_dir, retriever, opts(tmp_path))["metrics"]
    r10 = np.mean([m[f"{c}/R@10"] for c in ("dress", "shirt", "toptee")])
    r50 = np.mean([m[f"{c}/R@50"] for c in ("dress", "shirt", "toptee")])
    assert m["avg/R@10"] == pytest.approx(r10) and m["avg/(R@10+R@50)/2"] == pytest.approx((r10 + r50) / 2)


# -- GeneCIS / MMEB: NaN as the official sorts see it -------------------------------------------------
def torch_sort_rank(scores: np.ndarray) -> int:
    """GeneCIS `validate`: position of index 0 after `similarities.sort(descending=True)` (stable)."""
    order = torch.sort(torch.tensor(scores), descending=True, stable=True).indices.tolist()
    return order.index(0)


@pytest.mark.parametrize("row", [[np.nan, 0.2, 0.9], [0.5, np.nan, 0.1], [0.5, 0.5, np.nan], [np.nan, np.nan, 1.0],
                                 [0.3, 0.1, 0.2], [0.1, 0.3, 0.3]])
def test_nan_scores_rank_as_the_official_sorts(row):
    s = np.array(row)
    assert M.precision_at_1([s]) == (100.0 if int(np.argmax(s)) == 0 else 0.0)  # VLM2Vec: pred == 0
    rank = torch_sort_rank(s)
    assert M.local_recall([s], 0, (1, 2, 3)) == {f"R@{k}": 100.0 * (rank < k) for k in (1, 2, 3)}


def test_mmeb_candidates_follow_vlm2vec_zip(caplog):
    row = {"tgt_text": ["a", "b", "c"], "tgt_img_path": ["x.png"]}  # zip keeps one pair
    with caplog.at_level(logging.WARNING, logger="megapairs"):
        assert candidates(row) == [("a", "x.png")]
    assert "zip" in caplog.text
    assert candidates({"tgt_text": ["a", "b"], "tgt_img_path": ["", "", "z.png"]}) == [("a", ""), ("b", "")]
    # ours only: one path given as a string is shared (MMEB-eval always has lists; zip would split the string)
    assert candidates({"tgt_text": ["a", "b"], "tgt_img_path": "x.png"}) == [("a", "x.png"), ("b", "x.png")]


class NanRetriever(ConstantRetriever):
    def encode(self, images=None, text=None):
        return super().encode(images, text) * float("nan")


def test_nan_embeddings_are_a_clear_error(cirr_dir: Path, tmp_path: Path):
    with pytest.raises(UserError, match="NaN or infinite"):  # the old norm check let NaN through
        evaluate("cirr", cirr_dir, NanRetriever(), opts(tmp_path))


def test_circo_scores_query_id_i_against_the_ith_annotation(circo_dir: Path, retriever, tmp_path: Path, caplog):
    """compute_metrics reads annotations[int(query_id)]: with ids out of file order, a query's
    predictions meet another entry's ground truth. We give the same numbers, with a warning."""
    val_path = circo_dir / "annotations" / "val.json"
    rows = json.loads(val_path.read_text())
    rows[0]["id"], rows[1]["id"] = 1, 0
    val_path.write_text(json.dumps(rows))
    with caplog.at_level(logging.WARNING, logger="megapairs"):
        res = evaluate("circo", circo_dir, retriever, opts(tmp_path))
    sub = json.loads((tmp_path / "out" / "circo_val_submission.json").read_text())
    preds = [sub[q] for q in sub]
    truth = [rows[int(q)] for q in sub]
    want, sem = circo_official(preds, [r["gt_img_ids"] for r in truth], [r.get("semantic_aspects", []) for r in truth])
    assert all(same(res["metrics"][k], v) for k, v in want.items())
    assert all(same(res["details"]["semantic_mAP@10"][a], v) for a, v in sem.items())
    assert "not their position" in caplog.text


def test_genecis_empty_task_file_is_a_clear_error(genecis_dir: Path, retriever, tmp_path: Path):
    (genecis_dir / "genecis" / "focus_object.json").write_text("[]")  # official: argmax of an empty array fails
    with pytest.raises(UserError, match="focus_object.*no rows"):
        evaluate("genecis", genecis_dir, retriever, opts(tmp_path, tasks=("focus_object",)))


def test_genecis_crop_pads_in_the_file_mode_as_the_official_loader(tmp_path: Path, caplog):
    """VAWDataset crops and pads the image in its own mode (`Image.new(mode, ..., (0,) if "L" else
    (0, 0, 0))` + paste); RGB comes later, in the transform. For RGB / L files that equals converting
    first. For a palette file the pasted indices meet the new square's palette, so the crop's colours
    change: odd, but that is the official image, and ours, with a warning."""
    from PIL import Image

    from megapairs.evaluate.common import Crop
    from megapairs.evaluate.context import load_crop

    rng = np.random.default_rng(0)
    rgb = Image.fromarray((rng.random((40, 60, 3)) * 255).astype(np.uint8))
    rgb.quantize(8).save(tmp_path / "p.png")
    rgb.convert("L").save(tmp_path / "grey.png")
    box = Crop(30, 10, 20, 10)  # window: x 16..50, y 3..20 -> 34 x 17, pasted at y = 8 of a 34 x 34 square

    def official(path: Path) -> np.ndarray:
        im = Image.open(path).crop((16, 3, 50, 20))
        square = Image.new(im.mode, (34, 34), (0,) if im.mode == "L" else (0, 0, 0))
        square.paste(im, (0, 8))
        return np.asarray(square.convert("RGB"))

    with caplog.at_level(logging.WARNING, logger="megapairs"):
        pal = np.asarray(load_crop(tmp_path / "p.png", box).convert("RGB"))
    grey = np.asarray(load_crop(tmp_path / "grey.png", box).convert("RGB"))
    assert np.array_equal(pal, official(tmp_path / "p.png")) and np.array_equal(grey, official(tmp_path / "grey.png"))
    rgb_first = np.asarray(Image.open(tmp_path / "p.png").convert("RGB").crop((16, 3, 50, 20)))
    assert not np.array_equal(pal[8:25], rgb_first)  # converting first (the old way) differs here
    assert np.array_equal(grey[8:25], np.asarray(Image.open(tmp_path / "grey.png").convert("RGB").crop((16, 3, 50, 20))))
    assert "mode P" in caplog.text


def test_cirr_targets_outside_the_split_are_a_clear_error(cirr_dir: Path, retriever, tmp_path: Path):
    cap = cirr_dir / "captions" / "cap.rc2.val.json"
    rows = json.loads(cap.read_text())
    rows[0]["target_soft"]["dev-99-0-img0"] = 0.5  # CIRPLANT: asin2id[...] raises KeyError
    cap.write_text(json.dumps(rows))
    with pytest.raises(UserError, match="dev-99-0-img0"):
        evaluate("cirr", cirr_dir, retriever, opts(tmp_path))


def test_a_cached_gallery_with_nan_is_not_used(cirr_dir: Path, retriever, tmp_path: Path):
    """Gallery caches written before NaN embeddings were refused (the old norm check let them through)
    must not bring NaN back: such a cache is encoded afresh."""
    first = evaluate("cirr", cirr_dir, retriever, opts(tmp_path))
    caches = sorted((tmp_path / "cache").glob("*.npy"))
    assert caches
    for npy in caches:
        np.save(npy, np.full_like(np.load(npy), np.nan))
    again = evaluate("cirr", cirr_dir, retriever, opts(tmp_path))
    assert again["gallery_cache_hits"] == []
    assert again["metrics"] == first["metrics"]
    assert all(np.isfinite(np.load(npy)).all() for npy in caches)  # rewritten
