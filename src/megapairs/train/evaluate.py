"""In-training retrieval check on held-out triplets, through the one triplet evaluator
(`megapairs.evaluate.triplets.score_triplets`): composed / image / text queries side by side, the
first instruction per row, pessimistic ties, percent units, and the paired bootstrap of composed -
image. The gallery is every distinct image of the held-out rows (queries, positives, negatives).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from megapairs.evaluate.triplets import score_triplets
from megapairs.models.feature_cache import ref_key
from megapairs.train.data import TripletTable

EVAL_MODES = ("composed", "image", "text")


def held_out_rows(data: TripletTable, rows: np.ndarray,
                  exclude: frozenset = frozenset()) -> tuple[list[dict], dict[str, Any]]:
    """Rows with image keys (`ref_key`) for the evaluator, and key -> image reference. Negatives in
    `exclude` (images the training rows use) are left out of the gallery."""
    out, refs = [], {}
    for i in map(int, rows):
        row = data.row(i)
        texts = row["q_text"] if isinstance(row["q_text"], list) else [row["q_text"]]
        keys = []
        negatives = [h for h in (row["hns"] or []) if ref_key(h) not in exclude]
        for ref in [row["q_img"], row["t_img"], *negatives]:
            key = ref_key(ref)
            refs.setdefault(key, ref)
            keys.append(key)
        out.append({"q_img": keys[0], "q_text": list(texts), "t_img": keys[1], "hns": keys[2:]})
    return out, refs


def recall_on_triplets(model, data: TripletTable, rows: np.ndarray, features=None, *, bootstrap: int = 1000,
                       seed: int = 0, reference_policy: str = "keep",
                       exclude: frozenset = frozenset()) -> dict[str, Any]:
    """Metrics "<mode>/<metric>" in percent, plus "composed-image/R@1" (the mean difference) and its
    95 % interval ("composed-image/R@1_low", "_high"). `features`: an `ImageFeatureCache` holding these
    rows' images (then no image is decoded)."""
    held, refs = held_out_rows(data, rows, exclude)
    keys = list(refs)

    def embed(role: str, images: list | None, texts: list[str] | None) -> np.ndarray:
        if features is not None and images is not None:
            from megapairs.models.feature_cache import encode_cached

            return encode_cached(model, features, images, texts, role).float().cpu().numpy()
        return model.encode_inputs(role, images, texts).float().cpu().numpy()  # (n, D)

    def encode(mode: str, queries: list[dict]) -> np.ndarray:
        images = [refs[x["image"]] for x in queries] if mode != "text" else None
        texts = [x["text"] for x in queries] if mode != "image" else None
        return embed("query" if texts is not None else "candidate", images, texts)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            gallery = embed("candidate", [refs[k] for k in keys], None)  # (N, D)
            scores, details = score_triplets(held, keys, gallery, encode, modes=EVAL_MODES, policy=reference_policy,
                                             bootstrap=bootstrap, seed=seed)
    finally:
        model.train(was_training)
    out: dict[str, Any] = dict(scores)
    ci = details.get("bootstrap", {}).get("composed-image", {}).get("R@1")
    if ci:
        out.update({"composed-image/R@1": ci["diff"], "composed-image/R@1_low": ci["low"],
                    "composed-image/R@1_high": ci["high"]})
    out["gallery"] = float(len(keys))
    out["queries"] = float(len(details["units"]))
    return out
