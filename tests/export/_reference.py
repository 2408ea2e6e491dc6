"""The row-by-row split of export 0.2 (Python dicts and a union-find over id strings), kept only as
the oracle the vectorised `megapairs.export.split` is checked against. Not used by the package."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

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

