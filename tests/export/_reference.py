"""The row-by-row export plan of 0.2 (a Python dict per triplet, a union-find over id strings), kept
only as the oracle that the columnar plan (`megapairs.export.plan`, `split.py`) is checked against.
Not used by the package."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from megapairs.export import layout
from megapairs.export.config import ExportConfig

from megapairs.export.split import DROPPED, TRAIN, VAL, seeded_key


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


@dataclass
class SplitResult:
    assignment: list[int]
    components: int = 0
    largest_component: int = 0
    carved: bool = False
    target_val: int = 0


def assign_splits(triplet_images: list[list[str]], val_fraction: float, seed: int) -> SplitResult:
    """`triplet_images[i]` lists every image id of triplet i (query, target, negatives)."""
    n = len(triplet_images)
    assignment = [TRAIN] * n
    target = int(round(val_fraction * n))
    if n == 0:
        return SplitResult(assignment)
    uf = _UnionFind()
    for imgs in triplet_images:
        for other in imgs[1:]:
            uf.union(imgs[0], other)
    members: dict[str, list[int]] = {}
    for i, imgs in enumerate(triplet_images):
        members.setdefault(uf.find(imgs[0]), []).append(i)
    # The root is the smallest id of its component (union keeps the smaller root), so the key below
    # does not depend on the order triplets came in.
    order = sorted(members, key=lambda root: (seeded_key(seed, root), root))
    result = SplitResult(assignment, components=len(members),
                         largest_component=max(len(v) for v in members.values()), target_val=target)
    if target == 0:
        return result
    val = 0
    for root in order:
        size = len(members[root])
        if val + size <= target:
            for i in members[root]:
                assignment[i] = VAL
            val += size
        if val == target:
            break
    if val * 2 < target:
        train_roots = [r for r in members if assignment[members[r][0]] == TRAIN]
        if train_roots:
            biggest = max(train_roots, key=lambda r: (len(members[r]), r))
            _carve(triplet_images, members[biggest], target - val, seed, assignment)
            result.carved = True
    return result


def _carve(triplet_images: list[list[str]], idx: list[int], need: int, seed: int, assignment: list[int]) -> None:
    """Grow a region of images breadth-first over triplets until `need` triplets lie wholly inside."""
    by_image: dict[str, list[int]] = {}
    for i in idx:
        for img in set(triplet_images[i]):
            by_image.setdefault(img, []).append(i)
    inside: set[str] = set()
    count = {i: 0 for i in idx}  # distinct images of triplet i inside the region
    size = {i: len(set(triplet_images[i])) for i in idx}
    full = 0
    start = min(by_image, key=lambda img: (seeded_key(seed, img), img))
    queue: deque[int] = deque(sorted(by_image[start]))
    queued = set(queue)
    while queue and full < need:
        i = queue.popleft()
        for img in sorted(set(triplet_images[i])):
            if img in inside:
                continue
            inside.add(img)
            for j in by_image[img]:
                count[j] += 1
                if count[j] == size[j]:
                    full += 1
                if j not in queued:
                    queued.add(j)
                    queue.append(j)
    for i in idx:
        if count[i] == size[i]:
            assignment[i] = VAL
        elif count[i] > 0:
            assignment[i] = DROPPED


def confine_negatives(triplets: list[dict], assignment: list[int], seed: int) -> int:
    """Drop from each triplet's `hn_ids` the images that belong to the other split (step 4).
    Mutates the triplets; returns how many negatives were removed."""
    side: dict[str, int] = {}
    for t, a in zip(triplets, assignment):
        if a != DROPPED:
            side[t["q_id"]] = side[t["t_id"]] = a
    order = sorted(range(len(triplets)), key=lambda i: (seeded_key(seed, f"{triplets[i]['q_id']}_{triplets[i]['t_id']}"), i))
    for i in order:
        if assignment[i] != DROPPED:
            for h in triplets[i]["hn_ids"]:
                side.setdefault(h, assignment[i])
    removed = 0
    for t, a in zip(triplets, assignment):
        if a == DROPPED:
            continue
        keep = [h for j, h in enumerate(t["hn_ids"]) if j == 0 or side[h] == a]
        removed += len(t["hn_ids"]) - len(keep)
        t["hn_ids"] = keep
    return removed



# -- joining (export 0.2 triplets.py) --
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


# -- planning (export 0.2 ExportStage._make_plan, as a function of the input tables) --
def corpus_index(shards: list[pa.Table]) -> tuple[dict[str, str | None], dict[str, tuple[int, int]]]:
    captions: dict[str, str | None] = {}
    where: dict[str, tuple[int, int]] = {}
    for shard, t in enumerate(shards):
        for row, (i, st, cap) in enumerate(zip(*(t.column(c).to_pylist() for c in ("id", "status", "caption")))):
            if st == "ok" and i not in captions:
                captions[i] = cap
                where[i] = (shard, row)
    return captions, where


def reference_plan(corpus_shards: list[pa.Table], pairs: pa.Table, annotations: pa.Table,
                   c: ExportConfig) -> tuple[dict[str, list[dict]], list[dict], list[dict], dict[str, Any]]:
    """(rows by split in output order, tasks, images plan rows, stats) as export 0.2 planned them."""
    captions, where = corpus_index(corpus_shards)
    joined = join_triplets(pairs, annotations, captions, c)
    trip = joined.triplets
    split = assign_splits([[t["q_id"], t["t_id"]] for t in trip], c.val_fraction, c.seed)
    removed_negatives = confine_negatives(trip, split.assignment, c.seed)
    dropped = Counter(joined.dropped)
    n_boundary = sum(1 for a in split.assignment if a == DROPPED)
    if n_boundary:
        dropped["split_boundary"] += n_boundary
    if removed_negatives:
        dropped["hard_negatives_removed_by_split"] += removed_negatives
    ext = c.image_ext
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in layout.SPLITS}
    for t, a in zip(trip, split.assignment):
        if a == DROPPED:
            continue
        key = f"{t['q_id']}_{t['t_id']}"
        row = {
            "q_img": layout.image_relpath(t["q_id"], ext), "q_text": t["q_text"],
            "t_img": layout.image_relpath(t["t_id"], ext),
            "hns": [layout.image_relpath(h, ext) for h in t["hn_ids"]], "key": key, **t,
        }
        by_split[layout.SPLITS[1] if a == VAL else layout.SPLITS[0]].append(row)
    for rows in by_split.values():
        if c.shuffle:
            rows.sort(key=lambda r: (seeded_key(c.seed, r["key"]), r["key"]))
        else:
            rows.sort(key=lambda r: (r["q_id"], r["pair_rank"] if r["pair_rank"] is not None else 0, r["t_id"]))
    tasks: list[dict[str, Any]] = []
    owner: dict[str, int] = {}
    for split_name, rows in by_split.items():
        for part, start in enumerate(range(0, len(rows), c.shard_size)):
            chunk = rows[start : start + c.shard_size]
            index = len(tasks)
            tasks.append({"index": index, "split": split_name, "part": part, "rows": len(chunk)})
            for r in chunk:
                for img in (r["q_id"], r["t_id"], *r["hn_ids"]):
                    owner.setdefault(img, index)
    images = [{"id": i, "path": layout.image_relpath(i, ext), "owner": o,
               "corpus_shard": where[i][0], "corpus_row": where[i][1]} for i, o in sorted(owner.items())]
    stats = _plan_stats(by_split, joined, dropped, split, len(pairs), len(annotations), len(owner))
    return by_split, tasks, images, stats


def _hist(values: list[float], span: tuple[float, float] | None = None, bins: int = 20) -> dict[str, list]:
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(vals) == 0:
        return {"edges": [], "counts": []}
    lo, hi = span or (float(vals.min()), float(vals.max()))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.astype(int).tolist()}


def _summary(values: list[float]) -> dict[str, float | int | None]:
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(vals) == 0:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {"n": int(len(vals)), "min": round(float(vals.min()), 4),
            "median": round(float(np.median(vals)), 4), "max": round(float(vals.max()), 4)}


def _plan_stats(by_split, joined, dropped, split, n_pairs, n_annotations, n_images) -> dict[str, Any]:
    rows = [r for rs in by_split.values() for r in rs]
    images_per_split = {s: len({x for r in rs for x in (r["q_id"], r["t_id"], *r["hn_ids"])})
                        for s, rs in by_split.items()}
    by_view: dict[str, list[float]] = {}
    for r in rows:
        by_view.setdefault(r["view"] or "?", []).append(r["similarity"])
    scores = [r["similarity"] for r in rows if r["similarity"] is not None]
    span = (min(scores), max(scores)) if scores else None

    def counts(fn) -> dict[str, int]:
        return dict(sorted(Counter(str(fn(r)) for r in rows).items()))

    return {
        "pairs_in": n_pairs,
        "annotations_in": n_annotations,
        "triplets": len(rows),
        "splits": {s: len(rs) for s, rs in by_split.items()},
        "queries": {s: len({r["q_id"] for r in rs}) for s, rs in by_split.items()},
        "images": n_images,
        "images_per_split": images_per_split,
        "dropped": dict(sorted(dropped.items())),
        "annotation_status": dict(sorted(joined.annotation_status.items())),
        "failure_examples": joined.failure_examples,
        "notes": dict(sorted(joined.notes.items())),
        "split_policy": {
            "kind": "image-connected-components" + ("+carve" if split.carved else ""),
            "components": split.components, "largest_component_triplets": split.largest_component,
            "carved": split.carved, "val_target": split.target_val,
        },
        "similarity_summary": {v: _summary(s) for v, s in [("all", scores), *sorted(by_view.items())]},
        "similarity_histograms": {"all": _hist(scores, span),
                                  **{v: _hist(s, span) for v, s in sorted(by_view.items())}},
        "instructions_per_triplet": counts(lambda r: len(r["q_text"])),
        "hns_per_triplet": counts(lambda r: len(r["hns"])),
        "views": counts(lambda r: r["view"]),
        "found_by": counts(lambda r: "+".join(sorted(r["found_by"]))),
        "describers": counts(lambda r: r["describer"]),
        "writers": counts(lambda r: r["writer"]),
        "writers_used": counts(lambda r: r["writer_used"]),
        "prompt_versions": counts(lambda r: r["prompt_version"]),
    }

