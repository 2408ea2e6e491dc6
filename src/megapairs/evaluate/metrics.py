"""Retrieval metrics, pure numpy, each following the official evaluation code of its benchmark.

Conventions shared by every function here:

- Results are percentages (x100), as the benchmarks and the MegaPairs paper report them.
- A *ranking* is a sequence of gallery ids, best first. Ties in scores are broken by gallery order
  (`stable_rank`: a stable sort, so of two equal scores the one listed first in the gallery wins).
- Reference image: `apply_reference_policy` keeps it ("keep") or deletes it from the ranking
  ("remove") before any metric is computed. CIRR's subset metric always drops it (its definition).
- Fewer than k ground truths: AP@k divides by min(|GT|, k) (CIRCO). Fewer than k ranked items: the
  missing positions count as misses.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np

Id = Hashable


def stable_rank(scores: np.ndarray) -> np.ndarray:
    """Indices that sort `scores` (N,) or (Q, N) from best to worst; equal scores keep gallery order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=-1, kind="stable")


def apply_reference_policy(ranking: Sequence[Id], reference: Id | None, policy: str) -> list[Id]:
    """"keep": the ranking as is. "remove": the ranking without the query's reference image."""
    if policy == "keep" or reference is None:
        return list(ranking)
    if policy == "remove":
        return [x for x in ranking if x != reference]
    raise ValueError(f"reference policy must be keep or remove, got {policy!r}")


def _check_unique(ranking: Sequence[Id]) -> None:
    if len(set(ranking)) != len(ranking):
        raise ValueError("a ranking lists the same image twice")  # the CIRCO script refuses these too


def average_precision_at_k(ranking: Sequence[Id], relevant: set, k: int) -> float:
    """CIRCO AP@k = sum_{i<=k} P(i) * rel(i) / min(|GT|, k), P(i) = precision of the top i (a fraction)."""
    if not relevant:
        raise ValueError("AP@k needs at least one ground-truth image")
    hits = np.array([x in relevant for x in ranking[:k]], dtype=np.float64)  # rel(i)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)  # P(i)
    return float((precision * hits).sum() / min(len(relevant), k))


def circo_map(rankings: Sequence[Sequence[Id]], gts: Sequence[Sequence[Id]],
              ks: Sequence[int] = (5, 10, 25, 50)) -> dict[str, float]:
    """CIRCO mAP@k: the mean over queries of AP@k (miccunifi/CIRCO `src/evaluation.py`)."""
    out: dict[str, float] = {}
    for ranking in rankings:
        _check_unique(ranking)
    for k in ks:
        aps = [average_precision_at_k(r, set(g), k) for r, g in zip(rankings, gts, strict=True)]
        out[f"mAP@{k}"] = 100.0 * float(np.mean(aps)) if aps else float("nan")
    return out


def per_query_ap(rankings: Sequence[Sequence[Id]], gts: Sequence[Sequence[Id]], k: int) -> np.ndarray:
    return np.array([average_precision_at_k(r, set(g), k) for r, g in zip(rankings, gts, strict=True)])


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


def subset_ranking(member_scores: np.ndarray, members: Sequence[Id], reference: Id | None) -> list[Id]:
    """CIRR subset ranking: the query's `img_set.members` minus the reference, best first."""
    keep = [i for i, m in enumerate(members) if m != reference]
    scores = np.asarray(member_scores)[keep]
    return [members[keep[i]] for i in stable_rank(scores)]


def cirr_recall_subset(member_scores: Sequence[np.ndarray], members: Sequence[Sequence[Id]],
                       references: Sequence[Id], targets: Sequence[Id],
                       ks: Sequence[int] = (1, 2, 3)) -> dict[str, float]:
    """CIRR Recall_subset@k: Recall@k with the ranking restricted to img_set members minus the reference
    (CIRPLANT `eval_test_scoring_step_CIRR`; 6 members -> 5 candidates)."""
    rankings = [subset_ranking(s, m, r) for s, m, r in zip(member_scores, members, references, strict=True)]
    return recall_at_k(rankings, targets, ks, prefix="Rsubset")


def fashioniq_summary(per_category: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """FashionIQ: R@10 / R@50 per category, then the plain mean of the categories (not of all queries)."""
    out: dict[str, float] = {}
    for cat, m in per_category.items():
        out.update({f"{cat}/{k}": v for k, v in m.items()})
    names = sorted({k for m in per_category.values() for k in m}, key=lambda s: int(s.split("@")[1]))
    for k in names:
        out[f"avg/{k}"] = float(np.mean([m[k] for m in per_category.values()]))
    return out


def local_recall(scores: Sequence[np.ndarray], positives: Sequence[int] | int = 0,
                 ks: Sequence[int] = (1, 2, 3)) -> dict[str, float]:
    """Recall@k when every query ranks its own small gallery (GeneCIS). `scores[q]` holds the query's
    scores over its gallery; `positives[q]` is the index of the true target in it (GeneCIS puts the
    target first, index 0, as the official loader does)."""
    pos = [positives] * len(scores) if isinstance(positives, int) else list(positives)
    ranks = np.array([int(np.nonzero(stable_rank(s) == p)[0][0]) for s, p in zip(scores, pos, strict=True)])
    return {f"R@{k}": 100.0 * float(np.mean(ranks < k)) if len(ranks) else float("nan") for k in ks}


def genecis_summary(per_task: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """GeneCIS: R@1/2/3 per task, and the headline average R@1 over the tasks."""
    out = {f"{t}/{k}": v for t, m in per_task.items() for k, v in m.items()}
    out["avg/R@1"] = float(np.mean([m["R@1"] for m in per_task.values()]))
    return out


def precision_at_1(scores: Sequence[np.ndarray], positives: Sequence[int] | int = 0) -> float:
    """MMEB Precision@1 (= hit@1): % of queries whose best-scoring candidate is the positive. MMEB lists
    the positive first; ties go to the earlier candidate, as `np.argmax` does in VLM2Vec's eval."""
    pos = [positives] * len(scores) if isinstance(positives, int) else list(positives)
    hits = [int(np.argmax(np.asarray(s, dtype=np.float64))) == p for s, p in zip(scores, pos, strict=True)]
    return 100.0 * float(np.mean(hits)) if hits else float("nan")


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
