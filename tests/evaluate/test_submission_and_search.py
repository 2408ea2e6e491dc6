"""Submission validators and the FAISS search's deterministic tie handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from megapairs.evaluate import search as S
from megapairs.evaluate.submission import (SubmissionError, circo_submission, cirr_submission, validate_circo,
                                           validate_cirr, validate_file)

GALLERY = list(range(1000, 1060))
MEMBERS = ["m0", "m1", "m2", "m3", "m4", "m5"]
ANN = [{"pairid": 12063, "reference": "m0", "caption": "c", "img_set": {"id": 1, "members": MEMBERS}},
       {"pairid": 12064, "reference": "m3", "caption": "c", "img_set": {"id": 1, "members": MEMBERS}}]
NAMES = MEMBERS + [f"x{i}" for i in range(60)]


def test_circo_valid_and_invalid():
    sub = circo_submission({"1": GALLERY[:50], "2": GALLERY[5:58]})
    assert len(sub["2"]) == 50
    validate_circo(sub, query_ids=[1, 2], gallery_ids=GALLERY)
    cases = [
        ({"1": GALLERY[:49], "2": GALLERY[:50]}, "49 predictions"),
        ({"1": GALLERY[:49] + [1000], "2": GALLERY[:50]}, "duplicate"),
        ({"1": GALLERY[:50]}, "missing query ids"),
        ({"1": GALLERY[:50], "2": GALLERY[:50], "3": GALLERY[:50]}, "unknown query ids"),
        ({"1": [str(x) for x in GALLERY[:50]], "2": GALLERY[:50]}, "must be ints"),
        ({"1": GALLERY[:49] + [7], "2": GALLERY[:50]}, "outside the allowed"),
    ]
    for bad, msg in cases:
        with pytest.raises(SubmissionError, match=msg):
            validate_circo(bad, query_ids=[1, 2], gallery_ids=GALLERY)


def test_cirr_valid_files(tmp_path: Path):
    rec = cirr_submission({12063: NAMES[1:51], 12064: NAMES[:3] + NAMES[4:51]}, "recall")
    sub = cirr_submission({12063: ["m1", "m2", "m3", "m4"], 12064: ["m0", "m1", "m2"]}, "recall_subset")
    assert rec["version"] == "rc2" and rec["metric"] == "recall" and len(sub["12063"]) == 3
    validate_cirr(rec, ANN, gallery=NAMES)
    validate_cirr(sub, ANN)
    path = tmp_path / "sub.json"
    path.write_text(json.dumps(sub))
    validate_file(path, "cirr", annotations=ANN)


def test_cirr_invalid_files():
    good = {"version": "rc2", "metric": "recall_subset", "12063": ["m1", "m2", "m3"], "12064": ["m0", "m1", "m2"]}
    cases = [
        ({**good, "version": "rc1"}, "version"),
        ({**good, "metric": "precision"}, "metric"),
        ({**good, "12063": ["m0", "m1", "m2"]}, "outside the allowed"),  # the reference is not a candidate
        ({**good, "12063": ["m1", "x1", "m2"]}, "outside the allowed"),  # not an img_set member
        ({**good, "12063": ["m1", "m2"]}, "2 predictions"),
        ({k: v for k, v in good.items() if k != "12064"}, "missing pairids"),
    ]
    for bad, msg in cases:
        with pytest.raises(SubmissionError, match=msg):
            validate_cirr(bad, ANN)


def test_cirr_size_limit():
    long = [f"test1-{'9' * 120}-{i}" for i in range(50)]
    big = {"version": "rc2", "metric": "recall", **{str(i): long for i in range(1000)}}
    with pytest.raises(SubmissionError, match="at most"):
        validate_cirr(big)


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_search_ties_follow_gallery_order():
    # 30 identical gallery vectors: every score ties; the ranking must be 0, 1, 2, ...
    g = _unit(np.ones((30, 4)))
    q = _unit([[1.0, 1.0, 1.0, 1.0]])
    assert S.search(q, g, k=5)[0].tolist() == [0, 1, 2, 3, 4]
    # a tie group that runs past the fetched neighbours falls back to the exact ranking
    g2 = np.concatenate([_unit([[0.0, 1, 0, 0]]), g])  # index 0 scores lower than the 30 tied ones
    assert S.search(q, g2, k=20)[0].tolist() == list(range(1, 21))
    # exclusion removes the reference and still returns k items
    assert S.search(q, g, k=5, exclude=[2])[0].tolist() == [0, 1, 3, 4, 5]


def test_search_matches_numpy_on_random_data():
    rng = np.random.default_rng(0)
    g, q = _unit(rng.normal(size=(200, 8))), _unit(rng.normal(size=(10, 8)))
    got = S.search(q, g, k=50, exclude=[None, 3] + [None] * 8)
    for i in range(10):
        want = [j for j in np.argsort(-(g @ q[i]), kind="stable") if not (i == 1 and j == 3)][:50]
        assert got[i].tolist() == want
    assert len(S.search(q, g[:7], k=50)[0]) == 7  # small gallery: everything, ranked
