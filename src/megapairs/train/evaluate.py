"""In-training retrieval check on held-out triplets.

Queries are (query image, first instruction); the gallery is every distinct image among the held-out
rows' positives and hard negatives (query images included, as in the mined negatives). Reports
Recall@{1,5,10} of the positive and its mean rank. A quick signal for training, not a benchmark.
"""

from __future__ import annotations

import numpy as np
import torch

from megapairs.train.data import TripletTable


def recall_on_triplets(model, data: TripletTable, rows: np.ndarray,
                       ks: tuple[int, ...] = (1, 5, 10), features=None) -> dict[str, float]:
    """`features`: an `ImageFeatureCache` holding these rows' images (then no image is decoded)."""
    q_imgs, q_texts, targets = [], [], []
    gallery: dict[str, int] = {}  # image path -> gallery index, in first-seen order
    for i in map(int, rows):
        row = data.row(i)
        texts = row["q_text"] if isinstance(row["q_text"], list) else [row["q_text"]]
        q_imgs.append(row["q_img"])
        q_texts.append(texts[0])
        for ref in [row["t_img"], row["q_img"], *(row["hns"] or [])]:
            gallery.setdefault(ref, len(gallery))
        targets.append(row["t_img"])
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        if features is not None:
            from megapairs.train.feature_cache import encode_cached

            q = encode_cached(model, features, q_imgs, q_texts, "query")  # (Q, D)
            g = encode_cached(model, features, list(gallery), None, "candidate")  # (N, D)
        else:
            q = model.encode_inputs("query", q_imgs, q_texts)  # (Q, D)
            g = model.encode_inputs("candidate", list(gallery), None)  # (N, D)
    model.train(was_training)
    scores = q @ g.T  # (Q, N)
    target_idx = torch.tensor([gallery[t] for t in targets])
    target_scores = scores[torch.arange(len(targets)), target_idx]
    ranks = (scores > target_scores[:, None]).sum(1) + 1  # 1 = best
    out = {f"recall@{k}": float((ranks <= k).float().mean()) for k in ks}
    out["mean_rank"] = float(ranks.float().mean())
    out["gallery"] = float(len(gallery))
    return out
