"""Joining mined pairs with their annotations into triplets, counting everything left out.

A triplet is (query image, instructions, target image, hard negatives). Rows are keyed by image ids
here; `layout.py` turns ids into the relative paths of the exported dataset.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from megapairs.export.config import ExportConfig

# Why a pair did not become a triplet (keys of JoinResult.dropped; the card explains each).
DROP_REASONS = {
    "no_annotation": "the pair has no annotation row",
    "annotation_failed": "the annotation failed (see the failures table)",
    "too_few_instructions": "fewer usable instructions than export.min_instructions",
    "writer_excluded": "written by a writer listed in export.exclude_writers",
    "query_unusable": "the query image is not usable in the corpus",
    "target_unusable": "the target image is not usable in the corpus",
    "target_is_query": "target and query are the same image",
    "duplicate_pair": "the same (query, target) appears twice in the pairs",
    "split_boundary": "its images straddle the train/validation boundary (see the split policy)",
}


@dataclass
class JoinResult:
    triplets: list[dict[str, Any]]
    dropped: Counter = field(default_factory=Counter)
    annotation_status: Counter = field(default_factory=Counter)  # all annotation rows, by status
    failure_examples: dict[str, str] = field(default_factory=dict)  # status -> one reason text
    notes: Counter = field(default_factory=Counter)  # non-fatal fixes (negatives removed, ...)
    score_columns: list[str] = field(default_factory=list)


def clean_instructions(values: Any) -> list[str]:
    """Strip, drop empties and exact repeats, keep order."""
    out: list[str] = []
    for v in values or []:
        if not isinstance(v, str):
            continue
        s = " ".join(v.split())
        if s and s not in out:
            out.append(s)
    return out


def pick_negatives(query: str, target: str, mined: list[str] | None, usable: set[str] | dict,
                   n: int, notes: Counter) -> list[str]:
    """hns ids: the query first, then mined negatives that are usable, distinct, and not the target."""
    out = [query]
    for h in mined or []:
        if h == query:
            continue
        if h == target:
            notes["negative_was_target"] += 1
            continue
        if h not in usable:
            notes["negative_unusable"] += 1
            continue
        if h not in out:
            out.append(h)
    if mined and mined[0] != query:
        notes["query_not_first_negative"] += 1
    if len(out) < n:
        notes["fewer_negatives_than_asked"] += 1
    return out[:n]


def _index_annotations(ann: pa.Table, result: JoinResult) -> dict[tuple[str, str], dict[str, Any]]:
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for row in ann.to_pylist():
        status = row.get("status") or "ok"
        result.annotation_status[status] += 1
        if status != "ok" and status not in result.failure_examples and row.get("reason"):
            result.failure_examples[status] = str(row["reason"])[:300]
        key = (row["query_id"], row["target_id"])
        if key in index:
            result.notes["duplicate_annotation"] += 1
            continue
        index[key] = row
    return index


def join_triplets(pairs: pa.Table, annotations: pa.Table, captions: dict[str, str | None],
                  config: ExportConfig) -> JoinResult:
    """Pairs x annotations -> triplets (in pairs order). `captions` maps every *usable* corpus id
    to its caption; ids missing from it are unusable images."""
    result = JoinResult(triplets=[])
    result.score_columns = [c for c in pairs.column_names if c.startswith("score_")]
    ann = _index_annotations(annotations, result)
    seen: set[tuple[str, str]] = set()
    used_annotations: set[tuple[str, str]] = set()
    for p in pairs.to_pylist():
        q, t = p["query_id"], p["target_id"]
        key = (q, t)
        if key in seen:
            result.dropped["duplicate_pair"] += 1
            continue
        seen.add(key)
        a = ann.get(key)
        if a is None:
            result.dropped["no_annotation"] += 1
            continue
        used_annotations.add(key)
        status = a.get("status") or "ok"
        if status != "ok" and not config.include_failed:
            result.dropped["annotation_failed"] += 1
            continue
        instructions = clean_instructions(a.get("instructions"))
        writer_used = a.get("writer_used") or ""
        if any(writer_used.startswith(prefix) for prefix in config.exclude_writers):
            result.dropped["writer_excluded"] += 1
            continue
        if len(instructions) < config.min_instructions:
            result.dropped["too_few_instructions"] += 1
            continue
        if q == t:
            result.dropped["target_is_query"] += 1
            continue
        if q not in captions:
            result.dropped["query_unusable"] += 1
            continue
        if t not in captions:
            result.dropped["target_unusable"] += 1
            continue
        hns = pick_negatives(q, t, p.get("hard_negatives"), captions, config.num_hard_negatives, result.notes)
        triplet = {
            "q_id": q, "t_id": t, "hn_ids": hns, "q_text": instructions,
            "view": p.get("best_view"), "found_by": list(p.get("found_by") or []),
            "similarity": _float(p.get("best_score")),
            **{c: _float(p.get(c)) for c in result.score_columns},
            "pair_rank": p.get("pair_rank"),
            "description": a.get("description"), "describer": a.get("describer"),
            "writer": a.get("writer"), "writer_used": a.get("writer_used"),
            "prompt_version": a.get("prompt_version"), "annotation_status": status,
            "q_caption": captions.get(q), "t_caption": captions.get(t),
        }
        result.triplets.append(triplet)
    result.notes["annotations_without_pair"] += len(set(ann) - used_annotations)
    result.notes = Counter({k: v for k, v in result.notes.items() if v})
    return result


def _float(v: Any) -> float | None:
    return None if v is None else round(float(v), 6)
