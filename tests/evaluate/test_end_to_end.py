"""The runner on tiny benchmark folders with a tiny random CLIP, checked against a brute-force
recomputation (full score matrix, Python sorting, metric definitions re-implemented here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from megapairs.evaluate import evaluate
from megapairs.evaluate.context import load_crop
from megapairs.evaluate.submission import validate_circo, validate_cirr


def opts(tmp_path: Path, **kw):
    return {"out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "progress": False, **kw}


def enc(r, images=None, text=None) -> np.ndarray:
    return r.encode(images=images, text=text).numpy().astype(np.float64)


def naive_order(scores, skip=None) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [i for i in order if i != skip]


def naive_ap(ranking, gts, k) -> float:
    total, hits = 0.0, 0
    for i, x in enumerate(ranking[:k], start=1):
        if x in gts:
            hits += 1
            total += hits / i
    return total / min(len(gts), k)


def naive_recall(rankings, targets, k) -> float:
    return 100 * np.mean([any(t in r[:k] for t in (tg if isinstance(tg, set) else {tg}))
                          for r, tg in zip(rankings, targets)])


def test_circo_end_to_end(circo_dir: Path, retriever, tmp_path: Path):
    res = evaluate("circo", circo_dir, retriever, opts(tmp_path, paper_model="BGE-VL-base"))
    info = json.loads((circo_dir / "COCO2017_unlabeled/annotations/image_info_unlabeled2017.json").read_text())
    ids = [im["id"] for im in info["images"]]
    path = {im["id"]: str(circo_dir / "COCO2017_unlabeled/unlabeled2017" / im["file_name"]) for im in info["images"]}
    val = json.loads((circo_dir / "annotations/val.json").read_text())
    g = enc(retriever, images=[path[i] for i in ids])
    texts = [f"Find a picture that also {q['shared_concept']}, but {q['relative_caption']}." for q in val]
    q = enc(retriever, images=[path[x["reference_img_id"]] for x in val], text=texts)
    s = q @ g.T
    rankings = [[ids[i] for i in naive_order(row)] for row in s]
    for k in (5, 10, 25, 50):
        want = 100 * np.mean([naive_ap(r, set(x["gt_img_ids"]), k) for r, x in zip(rankings, val)])
        assert res["metrics"][f"mAP@{k}"] == pytest.approx(want)
        assert res["metrics"][f"R@{k}"] == pytest.approx(naive_recall(rankings, [x["target_img_id"] for x in val], k))
    assert res["template"] == {"name": "megapairs", "format": "Find a picture that also {shared_concept}, but "
                                                              "{relative_caption}."}
    assert res["reference_policy"] == "keep" and res["num_queries"] == 3 and res["gallery_size"] == 12
    sem = res["details"]["semantic_mAP@10"]  # the official nine, in order; "style" is not one of them
    assert list(sem)[:2] == ["cardinality", "addition"] and len(sem) == 9 and "style" not in sem
    assert not np.isnan(sem["cardinality"]) and np.isnan(sem["addition"])

    out = tmp_path / "out"
    saved = json.loads((out / "circo_val.json").read_text())
    assert saved["metrics"] == res["metrics"] and saved["template"]["name"] == "megapairs"
    md = (out / "circo_val.md").read_text()
    assert "BGE-VL-base (paper, test, Table 6)" in md and "| mAP@5 |" in md and "34.30" in md
    assert "reference image: keep" in md
    sub = json.loads((out / "circo_val_submission.json").read_text())
    assert sub["0"] == rankings[0]

    # the gallery cache is reused for the same retriever, and not for another preprocess_id
    again = evaluate("circo", circo_dir, retriever, opts(tmp_path))
    assert again["gallery_cache_hits"] == ["circo"] and again["metrics"] == res["metrics"]
    from tests.evaluate.conftest import TinyClipRetriever

    other = evaluate("circo", circo_dir, TinyClipRetriever(seed=1), opts(tmp_path))
    assert other["gallery_cache_hits"] == []


def test_circo_test_split_writes_valid_submission(circo_dir: Path, retriever, tmp_path: Path):
    res = evaluate("circo", circo_dir, retriever, opts(tmp_path, split="test", reference_policy="remove"))
    assert res["metrics"] == {} and res["split"] == "test" and res["reference_policy"] == "remove"
    sub = json.loads((tmp_path / "out" / "circo_test_submission.json").read_text())
    ids = list(range(101, 113))
    validate_circo(sub, query_ids=[7, 8], gallery_ids=ids, k=11)  # 12 images minus the reference
    assert 105 not in sub["7"] and 106 not in sub["8"]
    assert "no ground truth" in (tmp_path / "out" / "circo_test.md").read_text()


def test_cirr_end_to_end(cirr_dir: Path, retriever, tmp_path: Path):
    res = evaluate("cirr", cirr_dir, retriever, opts(tmp_path))
    split = json.loads((cirr_dir / "image_splits/split.rc2.val.json").read_text())
    names = list(split)
    caps = json.loads((cirr_dir / "captions/cap.rc2.val.json").read_text())
    g = enc(retriever, images=[str(cirr_dir / "img_raw" / split[n]) for n in names])
    q = enc(retriever, images=[str(cirr_dir / "img_raw" / split[c["reference"]]) for c in caps],
            text=[c["caption"] for c in caps])
    s = q @ g.T
    for row, c in zip(s, caps):  # CIRPLANT: the reference keeps its place, with the row's lowest score
        row[names.index(c["reference"])] = row.min()
    rankings = [[names[i] for i in naive_order(row)] for row in s]
    targets = [c["target_hard"] for c in caps]
    for k in (1, 5, 10, 50):
        assert res["metrics"][f"R@{k}"] == pytest.approx(naive_recall(rankings, targets, k))
    subset = [[m for m in r if m in c["img_set"]["members"]] for r, c in zip(rankings, caps)]
    for k in (1, 2, 3):
        assert res["metrics"][f"Rsubset@{k}"] == pytest.approx(naive_recall(subset, targets, k))
    assert res["reference_policy"] == "min" and res["template"]["name"] == "caption"
    rec = json.loads((tmp_path / "out" / "cirr_val_recall.json").read_text())
    sub = json.loads((tmp_path / "out" / "cirr_val_recall_subset.json").read_text())
    validate_cirr(rec, caps, gallery=names, k=12)
    validate_cirr(sub, caps)
    assert sub["1"] == subset[0][:3]


def test_cirr_test1_keep_policy(cirr_dir: Path, retriever, tmp_path: Path):
    res = evaluate("cirr", cirr_dir, retriever, opts(tmp_path, split="test", reference_policy="keep"))
    assert res["split"] == "test1" and res["metrics"] == {}
    rec = json.loads((tmp_path / "out" / "cirr_test1_recall.json").read_text())
    assert rec["version"] == "rc2" and rec["metric"] == "recall" and len(rec["1"]) == 12


def test_fashioniq_end_to_end(fiq_dir: Path, retriever, tmp_path: Path):
    res = evaluate("fashioniq", fiq_dir, retriever, opts(tmp_path))
    per_cat = {}
    for cat in ("dress", "shirt", "toptee"):
        names = json.loads((fiq_dir / f"image_splits/split.{cat}.val.json").read_text())
        rows = json.loads((fiq_dir / f"captions/cap.{cat}.val.json").read_text())
        g = enc(retriever, images=[str(fiq_dir / "images" / f"{n}.png") for n in names])
        q = enc(retriever, images=[str(fiq_dir / "images" / f"{r['candidate']}.png") for r in rows],
                text=[f"{r['captions'][0]}, and {r['captions'][1]}" for r in rows])
        rankings = [[names[i] for i in naive_order(row)] for row in q @ g.T]
        for k in (10, 50):
            want = naive_recall(rankings, [r["target"] for r in rows], k)
            assert res["metrics"][f"{cat}/R@{k}"] == pytest.approx(want)
            per_cat.setdefault(k, []).append(want)
    assert res["metrics"]["avg/R@10"] == pytest.approx(np.mean(per_cat[10]))
    assert res["num_queries"] == 6 and res["reference_policy"] == "keep"


def test_genecis_end_to_end(genecis_dir: Path, retriever, tmp_path: Path):
    from megapairs.evaluate.common import Crop

    res = evaluate("genecis", genecis_dir, retriever, opts(tmp_path))
    per_task_r1 = []
    for task in ("focus_attribute", "change_attribute", "focus_object", "change_object"):
        rows = json.loads((genecis_dir / "genecis" / f"{task}.json").read_text())
        rows = [r for r in rows if len(r["gallery"]) == 3] if "object" in task else rows

        def image(ref):
            if "val_image_id" in ref:
                return str(genecis_dir / "val2017" / f"{ref['val_image_id']:012d}.jpg")
            return load_crop(genecis_dir / "VG_100K" / f"{ref['image_id']}.jpg", Crop(*ref["instance_bbox"]))

        ranks = []
        for r in rows:
            q = enc(retriever, images=[image(r["reference"])], text=[r["condition"]])[0]
            g = enc(retriever, images=[image(x) for x in [r["target"], *r["gallery"]]])
            ranks.append(naive_order(g @ q).index(0))
        for k in (1, 2, 3):
            assert res["metrics"][f"{task}/R@{k}"] == pytest.approx(100 * np.mean([x < k for x in ranks]))
        per_task_r1.append(100 * np.mean([x < 1 for x in ranks]))
    assert res["metrics"]["avg/R@1"] == pytest.approx(np.mean(per_task_r1))
    assert res["details"]["focus_object"]["dropped_off_modal_gallery"] == 1


def test_mmeb_end_to_end(mmeb_dir: Path, retriever, tmp_path: Path):
    res = evaluate("mmeb", mmeb_dir, retriever, opts(tmp_path))
    img = lambda p: str(mmeb_dir / "eval_images" / p)  # noqa: E731
    # CIRR: composed queries vs composed candidates ("Represent the given image." + image)
    hits = []
    for qt, qi, tis in [("Given an image, find a similar everyday image with the described changes: add a dog",
                         "CIRR/c0.png", ["CIRR/c1.png", "CIRR/c2.png", "CIRR/c3.png"]),
                        ("Given an image, find a similar everyday image: make it blue", "CIRR/c3.png",
                         ["CIRR/c4.png", "CIRR/c5.png", "CIRR/c0.png"])]:
        q = enc(retriever, images=[img(qi)], text=[qt])[0]
        c = enc(retriever, images=[img(p) for p in tis], text=["Represent the given image."] * 3)
        hits.append(naive_order(c @ q)[0] == 0)
    assert res["metrics"]["CIRR"] == pytest.approx(100 * np.mean(hits))
    hits = []
    for qi, labels in [("CIRR/c2.png", ["dog", "cat", "car"]), ("CIRR/c5.png", ["car", "dog", "cat"])]:
        q = enc(retriever, images=[img(qi)], text=["Represent the given image for classification"])[0]
        hits.append(naive_order(enc(retriever, text=labels) @ q)[0] == 0)
    assert res["metrics"]["ImageNet-1K"] == pytest.approx(100 * np.mean(hits))
    assert res["metrics"]["Overall"] == pytest.approx((res["metrics"]["CIRR"] + res["metrics"]["ImageNet-1K"]) / 2)
    assert res["details"]["complete"] is False and "VQA" not in res["metrics"]


@pytest.mark.parametrize("instructions,n_composed", [("first", 3), ("all", 4)])
def test_triplets_end_to_end(triplets_file: Path, retriever, tmp_path: Path, instructions, n_composed):
    res = evaluate("triplets", triplets_file, retriever, opts(tmp_path, instructions=instructions))
    root = triplets_file.parent
    names = sorted({f"images/i{k}.png" for k in range(8)})
    g = enc(retriever, images=[str(root / n) for n in names])
    rows = [("images/i0.png", ["make it red", "paint it red"], "images/i1.png"),
            ("images/i2.png", ["add a tree"], "images/i3.png"),
            ("images/i0.png", ["show it at night"], "images/i4.png")]
    pairs = [(qi, t, ti) for qi, texts, ti in rows for t in (texts[:1] if instructions == "first" else texts)]
    assert res["details"]["composed_queries"] == n_composed == len(pairs)
    q = enc(retriever, images=[str(root / p[0]) for p in pairs], text=[p[1] for p in pairs])
    rankings = [[names[i] for i in naive_order(row)] for row in q @ g.T]
    for k in (1, 5, 10):
        assert res["metrics"][f"composed/R@{k}"] == pytest.approx(naive_recall(rankings, [p[2] for p in pairs], k))
    assert res["metrics"]["composed/mAP@10"] == pytest.approx(
        100 * np.mean([naive_ap(r, {p[2]}, 10) for r, p in zip(rankings, pairs)]))
    # image-only: i0 appears in two rows, merged into one query with targets {i1, i4}; every row
    # (unit) is scored, so the i0 query counts for both of its rows
    assert res["details"]["image_queries"] == 2
    qi = enc(retriever, images=[str(root / "images/i0.png"), str(root / "images/i2.png")])
    rk = [[names[i] for i in naive_order(row)] for row in qi @ g.T]
    t0, t1 = {"images/i1.png", "images/i4.png"}, {"images/i3.png"}
    per_row = [(rk[0], t0), (rk[1], t1), (rk[0], t0)][:len(pairs)] if instructions == "first" else \
        [(rk[0], t0), (rk[0], t0), (rk[1], t1), (rk[0], t0)]
    want = naive_recall([r for r, _ in per_row], [t for _, t in per_row], 5)
    assert res["metrics"]["image/R@5"] == pytest.approx(want)
    assert {"text/R@1", "text/mAP@50"} <= set(res["metrics"])


def test_candidate_role_is_passed_to_retrievers_that_take_it(mmeb_dir: Path, retriever, tmp_path: Path):
    """MLLM retrievers embed candidates with a different prompt; the gallery asks for role="candidate"."""
    calls = []

    class RoleAware:
        spec, preprocess_id = "role-aware:test", "role-aware"

        def encode(self, images=None, text=None, role=None):
            calls.append((role, images is not None, text is not None))
            return retriever.encode(images=images, text=text)

    evaluate("mmeb", mmeb_dir, RoleAware(), opts(tmp_path))
    assert ("candidate", False, True) in calls  # class labels: text candidates
    assert ("candidate", True, True) in calls  # CIRR targets: image + "Represent the given image."
    assert (None, True, True) in calls and all(r in (None, "candidate") for r, _, _ in calls)
