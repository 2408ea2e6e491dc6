"""Retrieval metrics, pure numpy, each following the official evaluation code of its benchmark.

Conventions shared by every function here:

- Results are percentages (x100), as the benchmarks and the MegaPairs paper report them.
- A *ranking* is a sequence of gallery ids, best first. Ties in scores are broken by gallery order
  (`stable_rank`: a stable sort, so of two equal scores the one listed first in the gallery wins).
- Reference image: `apply_reference_policy` keeps it ("keep") or deletes it from the ranking
  ("remove") before any metric is computed; "min" (CIRPLANT: it stays, with the row's lowest score)
  needs the scores and is done by the search (`search.search(demote=...)`). CIRR's subset metric
  always drops it (its definition).
- Fewer than k ground truths: AP@k divides by min(|GT|, k) (CIRCO). Fewer than k ranked items: the
  missing positions count as misses. An empty ground-truth list gives AP = NaN (the official 0 / 0),
  so the mean is NaN too; a warning names how many queries had none.
- Per-query galleries (GeneCIS, MMEB): the official codes' sorts treat NaN as the highest score.
"""

from __future__ import annotations

from typing import Collection, Hashable, Mapping, Sequence

import logging

import numpy as np

Id = Hashable
log = logging.getLogger("megapairs")


def stable_rank(scores: np.ndarray) -> np.ndarray:
    """Indices that sort `scores` (N,) or (Q, N) from best to worst; equal scores keep gallery order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=-1, kind="stable")


def apply_reference_policy(ranking: Sequence[Id], reference: Id | None, policy: str) -> list[Id]:
    """"keep": the ranking as is. "remove": the ranking without the query's reference image."""
    if policy == "keep" or reference is None:
        return list(ranking)
    if policy == "remove":
        return [x for x in ranking if x != reference]
    raise ValueError(f"reference policy must be keep or remove here, got {policy!r} (min needs the scores: "
                     "search.search(demote=...))")


def _check_unique(ranking: Sequence[Id]) -> None:
    if len(set(ranking)) != len(ranking):
        raise ValueError("a ranking lists the same image twice")  # the CIRCO script refuses these too


def average_precision_at_k(ranking: Sequence[Id], relevant: Collection[Id], k: int) -> float:
    """CIRCO AP@k = sum_{i<=k} P(i) * rel(i) / min(len(relevant), k), P(i) = precision of the top i.

    `relevant` is the ground-truth list as the annotation gives it: the divisor counts its entries
    as listed (a repeated id twice), exactly as CIRCO's `compute_metrics` does. An empty list gives
    NaN, as the official `np.sum(...) / min(0, k)` does (numpy's 0 / 0)."""
    if not len(relevant):
        return float("nan")
    gt = set(relevant)
    hits = np.array([x in gt for x in ranking[:k]], dtype=np.float64)  # rel(i)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)  # P(i)
    return float((precision * hits).sum() / min(len(relevant), k))


def circo_map(rankings: Sequence[Sequence[Id]], gts: Sequence[Sequence[Id]],
              ks: Sequence[int] = (5, 10, 25, 50)) -> dict[str, float]:
    """CIRCO mAP@k: the mean over queries of AP@k (miccunifi/CIRCO `src/evaluation.py`)."""
    out: dict[str, float] = {}
    for ranking in rankings:
        _check_unique(ranking)
    empty = sum(1 for g in gts if not len(g))
    if empty:
        log.warning("CIRCO: %d of %d queries have an empty gt_img_ids list; their AP is NaN, so every mAP@k is "
                    "NaN, as the official compute_metrics gives", empty, len(gts))
    for k in ks:
        aps = [average_precision_at_k(r, list(g), k) for r, g in zip(rankings, gts, strict=True)]
        out[f"mAP@{k}"] = 100.0 * float(np.mean(aps)) if aps else float("nan")
    return out


def per_query_ap(rankings: Sequence[Sequence[Id]], gts: Sequence[Sequence[Id]], k: int) -> np.ndarray:
    return np.array([average_precision_at_k(r, list(g), k) for r, g in zip(rankings, gts, strict=True)])


def recall_at_k(rankings: Sequence[Sequence[Id]], targets: Sequence[Id | set],
                ks: Sequence[int] = (1, 5, 10, 50), prefix: str = "R") -> dict[str, float]:
    """Recall@k: % of queries whose target is in the top k. A set target is a hit if any member is
    (used for merged duplicate queries); CIRCO, CIRR and FashionIQ use a single target."""
    out: dict[str, float] = {}
    for k in ks:
        hits = []
        for ranking, target in zip(rankings, targets, strict=True):
            top = ranking[:k]
            hits.append(any(t in top for t in target) if isinstance(target, (set, frozenset)) else target in top)
        out[f"{prefix}@{k}"] = 100.0 * float(np.mean(hits)) if hits else float("nan")
    return out


def subset_ranking(member_scores: np.ndarray, members: Sequence[Id], reference: Id | None,
                   positions: Sequence[int] | None = None) -> list[Id]:
    """CIRR subset ranking: the query's `img_set.members` minus the reference, best first.

    `positions[i]` is the gallery index of `members[i]`. Equal scores follow gallery order, because
    CIRPLANT builds the subset by filtering the global (gallery-ordered) ranking; without
    `positions` the members' own order stands in for it. A member listed twice is ranked once."""
    scores = np.asarray(member_scores, dtype=np.float64)
    pos = np.arange(len(members)) if positions is None else np.asarray(positions)
    keep, seen = [], set()
    for i, m in enumerate(members):
        if m != reference and m not in seen:
            seen.add(m)
            keep.append(i)
    keep_arr = np.asarray(keep, dtype=np.int64)
    if not len(keep_arr):
        return []
    order = np.lexsort((pos[keep_arr], -scores[keep_arr]))  # score desc, then gallery index asc
    return [members[keep_arr[i]] for i in order]


def cirr_recall_subset(member_scores: Sequence[np.ndarray], members: Sequence[Sequence[Id]],
                       references: Sequence[Id], targets: Sequence[Id],
                       ks: Sequence[int] = (1, 2, 3),
                       positions: Sequence[Sequence[int]] | None = None) -> dict[str, float]:
    """CIRR Recall_subset@k: Recall@k with the ranking restricted to img_set members minus the reference
    (CIRPLANT `eval_test_scoring_step_CIRR`; 6 members -> 5 candidates). `positions`: per query, the
    gallery indices of its members (tie order); see `subset_ranking`."""
    pos = positions if positions is not None else [None] * len(members)
    rankings = [subset_ranking(s, m, r, p) for s, m, r, p in zip(member_scores, members, references, pos, strict=True)]
    return recall_at_k(rankings, targets, ks, prefix="Rsubset")


def soft_recall_at_k(rankings: Sequence[Sequence[Id]], soft_targets: Sequence[Mapping[Id, float]],
                     ks: Sequence[int] = (1, 2, 5, 10, 50, 100), prefix: str = "R") -> dict[str, float]:
    """CIRPLANT's soft-label recall on CIRR val (`target_soft`: image -> 1.0 / 0.5 / -1.0): per query
    the highest soft score among the labelled images in the top k, floored at 0, averaged (x100)."""
    out: dict[str, float] = {}
    for k in ks:
        total = 0.0
        for ranking, soft in zip(rankings, soft_targets, strict=True):
            top = set(ranking[:k])
            total += max([0.0] + [float(v) for t, v in soft.items() if t in top])
        out[f"{prefix}@{k}"] = 100.0 * total / len(rankings) if len(rankings) else float("nan")
    return out


def mrr_at_k(rankings: Sequence[Sequence[Id]], targets: Sequence[Id | set],
             ks: Sequence[int] = (1, 5, 10, 20, 50, 100)) -> dict[str, float]:
    """MRR@k as MegaPairs' `eval_fashioniq.py` computes it: 1/i for the first hit at position i <= k,
    else 0, averaged over queries (x100)."""
    firsts = []
    for ranking, target in zip(rankings, targets, strict=True):
        wanted = target if isinstance(target, (set, frozenset)) else {target}
        firsts.append(next((i for i, x in enumerate(ranking, 1) if x in wanted), None))
    out: dict[str, float] = {}
    for k in ks:
        rr = [1.0 / i if i is not None and i <= k else 0.0 for i in firsts]
        out[f"MRR@{k}"] = 100.0 * float(np.mean(rr)) if rr else float("nan")
    return out


def fashioniq_summary(per_category: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """FashionIQ: metrics per category, then the plain mean of the categories (not of all queries), as
    MegaPairs' `eval_fashioniq.py` and SEARLE's `validate.py` print it; plus (avg R@10 + avg R@50) / 2."""
    out: dict[str, float] = {}
    for cat, m in per_category.items():
        out.update({f"{cat}/{k}": v for k, v in m.items()})
    names = sorted({k for m in per_category.values() for k in m},
                   key=lambda s: (s.split("@")[0] != "R", s.split("@")[0], int(s.split("@")[1])))
    for k in names:
        out[f"avg/{k}"] = float(np.mean([m[k] for m in per_category.values()]))
    if "avg/R@10" in out and "avg/R@50" in out:  # CLIP4Cir's "average_recall", the leaderboards' mean
        out["avg/(R@10+R@50)/2"] = (out["avg/R@10"] + out["avg/R@50"]) / 2
    return out


TIE_POLICIES = ("pessimistic", "official", "expected")


def _local_counts(scores: np.ndarray, positive: int, keys: Sequence[Id] | None) -> tuple[int, int, int]:
    """(candidates scoring above the positive, rivals tied with it, tied rivals listed before it).
    A candidate with the same key as the positive is the positive listed again, not a rival.
    NaN ranks above every number and ties with NaN: `np.argmax` returns the first NaN, and torch's
    descending sort puts NaN first."""
    s = np.asarray(scores, dtype=np.float64)
    rival = np.ones(len(s), dtype=bool)
    rival[positive] = False
    if keys is not None:
        rival &= np.array([k != keys[positive] for k in keys], dtype=bool)
    nan = np.isnan(s)
    if nan[positive]:
        above, same = np.zeros(len(s), dtype=bool), nan
    else:
        with np.errstate(invalid="ignore"):
            above, same = nan | (s > s[positive]), s == s[positive]
    tied = rival & same
    return int(np.sum(rival & above)), int(tied.sum()), int(tied[:positive].sum())


def local_ranks(scores: Sequence[np.ndarray], positives: Sequence[int] | int = 0, ties: str = "official",
                keys: Sequence[Sequence[Id]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per query: (0-based rank of the positive under `ties`, number of rivals tied with it).

    "pessimistic": every tied rival ranks above the positive; "official": the stable order of the
    list (what GeneCIS' sort and MMEB's `np.argmax` do with the positive listed first); "expected":
    the mean rank under random tie-breaking (greater + tied / 2)."""
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    pos = [positives] * len(scores) if isinstance(positives, int) else list(positives)
    ks = keys if keys is not None else [None] * len(scores)
    ranks, n_tied = [], []
    for s, p, k in zip(scores, pos, ks, strict=True):
        greater, tied, _ = _local_counts(s, p, k)
        if ties == "official":  # the official code knows no keys: plain list order
            g0, _, before = _local_counts(s, p, None)
            ranks.append(g0 + before)
        else:
            ranks.append(greater + tied if ties == "pessimistic" else greater + tied / 2)
        n_tied.append(tied)
    return np.asarray(ranks, dtype=np.float64), np.asarray(n_tied, dtype=np.int64)


def tied_rankings(scores: Sequence[np.ndarray], positives: Sequence[int] | int = 0,
                  keys: Sequence[Sequence[Id]] | None = None) -> int:
    """How many queries have a rival scoring exactly as their positive."""
    return int(np.sum(local_ranks(scores, positives, "official", keys)[1] > 0))


def local_recall(scores: Sequence[np.ndarray], positives: Sequence[int] | int = 0,
                 ks: Sequence[int] = (1, 2, 3), ties: str = "official",
                 keys: Sequence[Sequence[Id]] | None = None) -> dict[str, float]:
    """Recall@k when every query ranks its own small gallery (GeneCIS). `scores[q]` holds the query's
    scores over its gallery; `positives[q]` is the index of the true target in it (GeneCIS puts the
    target first, index 0, as the official loader does). `ties` as in `local_ranks`; "expected"
    gives P(rank < k) under random tie-breaking. `keys[q]` (optional) names the candidates, so the
    positive listed twice is not its own rival."""
    if not len(scores):
        return {f"R@{k}": float("nan") for k in ks}
    if ties != "expected":
        ranks, _ = local_ranks(scores, positives, ties, keys)
        return {f"R@{k}": 100.0 * float(np.mean(ranks < k)) for k in ks}
    pos = [positives] * len(scores) if isinstance(positives, int) else list(positives)
    counts = [_local_counts(s, p, None if keys is None else keys[q]) for q, (s, p) in enumerate(zip(scores, pos))]
    # rank = greater + U, U uniform on 0..tied: P(rank < k) = clip((k - greater) / (tied + 1), 0, 1)
    return {f"R@{k}": 100.0 * float(np.mean([np.clip((k - g) / (t + 1), 0.0, 1.0) for g, t, _ in counts]))
            for k in ks}


def genecis_summary(per_task: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """GeneCIS: R@1/2/3 per task, and the headline average R@1 over the tasks."""
    out = {f"{t}/{k}": v for t, m in per_task.items() for k, v in m.items()}
    out["avg/R@1"] = float(np.mean([m["R@1"] for m in per_task.values()]))
    return out


def precision_at_1(scores: Sequence[np.ndarray], positives: Sequence[int] | int = 0, ties: str = "official",
                   keys: Sequence[Sequence[Id]] | None = None) -> float:
    """MMEB Precision@1 (= hit@1): % of queries whose best-scoring candidate is the positive. MMEB lists
    the positive first; the default `ties="official"` gives a tie to the earlier candidate, as
    `np.argmax` does in VLM2Vec's eval (so a constant-score model gets 100 %); "pessimistic" counts a
    tie as a miss."""
    if not len(scores):
        return float("nan")
    return local_recall(scores, positives, (1,), ties, keys)["R@1"]


# MMEB-V1: 36 datasets in four meta-tasks; the 16 marked OOD are held out from MMEB-train.
MMEB_META: dict[str, tuple[str, ...]] = {
    "Classification": ("ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397", "Place365",
                       "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211"),
    "VQA": ("OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W", "ScienceQA",
            "VizWiz", "GQA", "TextVQA"),
    "Retrieval": ("VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i", "MSCOCO_i2t",
                  "NIGHTS", "WebQA", "FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS"),
    "Grounding": ("MSCOCO", "RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"),
}
MMEB_OOD = frozenset({"Place365", "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211", "ScienceQA",
                      "VizWiz", "GQA", "TextVQA", "FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS", "RefCOCO",
                      "RefCOCO-Matching", "Visual7W-Pointing"})


def mmeb_summary(per_dataset: Mapping[str, float]) -> dict[str, float]:
    """Per dataset P@1; per meta-task, IND, OOD and overall = plain means over the datasets present."""
    out = dict(per_dataset)
    groups = {meta: [d for d in names if d in per_dataset] for meta, names in MMEB_META.items()}
    groups["IND"] = [d for d in per_dataset if d not in MMEB_OOD]
    groups["OOD"] = [d for d in per_dataset if d in MMEB_OOD]
    groups["Overall"] = list(per_dataset)
    for name, members in groups.items():
        if members:
            out[name] = float(np.mean([per_dataset[d] for d in members]))
    return out
