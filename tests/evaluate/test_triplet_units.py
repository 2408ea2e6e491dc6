"""The triplet evaluator's units: every mode is judged against the unit's own composed-query answers,
and under "remove" the query image leaves the ranking in every mode. Both tests fail on the evaluator
that merged image-only queries' targets and kept the query image for text-only queries."""

from __future__ import annotations

import numpy as np

from megapairs.evaluate.triplets import score_triplets

# Gallery of four images on orthogonal axes (keys = names, embeddings = one-hot rows).
NAMES = ["red", "reddish", "green", "other"]
G = np.eye(4, dtype=np.float32)  # (4, 4)


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def test_image_only_is_not_credited_with_another_rows_target():
    # Two rows start from "red": one asks for green, one for the reddish sibling.
    rows = [{"q_img": "red", "q_text": ["make it green"], "t_img": "green"},
            {"q_img": "red", "q_text": ["make it darker"], "t_img": "reddish"}]

    def encode(mode, queries):
        out = []
        for q in queries:
            if mode == "image":  # the image alone: close to itself, then to its reddish sibling
                out.append(_unit([1.0, 0.6, 0.1, 0.0]))
            elif mode == "text":
                out.append(_unit([0.0, 0.0, 1.0, 0.0] if "green" in q["text"] else [0.0, 1.0, 0.0, 0.0]))
            else:
                out.append(_unit([0.5, 0.0, 1.0, 0.0] if "green" in q["text"] else [0.5, 1.0, 0.0, 0.0]))
        return np.stack(out)

    scores, details = score_triplets(rows, NAMES, G, encode, policy="remove", bootstrap=0)
    # image-only ranks reddish first for both units: a hit for the "darker" row only
    assert details["per_query"]["image"]["R@1"] == [0.0, 100.0]
    assert scores["image/R@1"] == 50.0 and scores["composed/R@1"] == 100.0
    assert details["image_queries"] == 1  # the shared image is still embedded once


def test_remove_takes_the_query_image_out_of_text_only_rankings():
    rows = [{"q_img": "red", "q_text": ["a red thing, but green"], "t_img": "green"}]

    def encode(mode, queries):  # the text lands nearest the query image itself, then the target
        return np.stack([_unit([1.0, 0.0, 0.8, 0.0]) for _ in queries])

    removed, _ = score_triplets(rows, NAMES, G, encode, policy="remove", bootstrap=0)
    kept, _ = score_triplets(rows, NAMES, G, encode, policy="keep", bootstrap=0)
    assert removed["text/R@1"] == 100.0 and kept["text/R@1"] == 0.0
    assert removed["image/R@1"] == removed["composed/R@1"] == 100.0


def test_identical_composed_queries_share_their_answers():
    # The same (image, instruction) with two correct targets: finding either one is a hit.
    rows = [{"q_img": "red", "q_text": ["make it green"], "t_img": "green"},
            {"q_img": "red", "q_text": ["make it green"], "t_img": "other"}]

    def encode(mode, queries):
        return np.stack([_unit([0.0, 0.0, 1.0, 0.9]) for _ in queries])

    scores, details = score_triplets(rows, NAMES, G, encode, policy="remove", bootstrap=0)
    assert details["per_query"]["composed"]["R@1"] == [100.0, 100.0]
    assert len(details["units"]) == 2
