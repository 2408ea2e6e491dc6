"""Train/validation split with no image shared between the splits.

Policy (documented in docs/export.md):

1. Link the query and target image of every triplet and take the connected components of that
   graph. A component goes whole to one split, so no query or target image is seen in both.
2. Visit the components in a seeded pseudo-random order and move each one to validation while it
   still fits in the budget `round(val_fraction * triplets)`; the rest stay in train.
3. Mined KNN graphs over a small or dense corpus are often one giant component. When step 2 fills
   less than half of the budget, validation is *carved* out of the largest train component: grow a
   region of images breadth-first from a seeded start, one triplet at a time, until the triplets
   lying wholly inside the region fill the budget. Triplets wholly inside go to validation,
   triplets wholly outside stay in train, and the few that straddle the border are dropped
   (counted as `split_boundary`). No image crosses the split either way.
4. Hard negatives follow: an image that is a query or target belongs to that split; an image used
   only as a negative belongs to the split of the first triplet (in seeded order) that uses it.
   Each triplet keeps only negatives of its own split (hns[0], the query, always stays). Linking
   negatives too would make a dense KNN graph one component and leave little to split.

Everything is deterministic for a seed and independent of the input order of the triplets.

The work runs on integer image codes in NumPy (SciPy's connected components, vectorised confinement),
so 26M triplets need arrays, not a Python object per triplet. Codes are ranks of the sorted image ids
(`encode_ids`), which keeps every tie-break of the policy ("smallest id") an integer comparison.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

TRAIN, VAL, DROPPED = 0, 1, -1


def seeded_key(seed: int, text: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest(), "big")


def seeded_keys(seed: int, texts) -> np.ndarray:
    """`seeded_key` of each string of an iterable, as uint64 (one hash per string; no list kept)."""
    prefix = f"{seed}:".encode()

    def one(t: str) -> int:
        return int.from_bytes(hashlib.blake2b(prefix + t.encode(), digest_size=8).digest(), "big")

    return np.fromiter((one(t) for t in texts), dtype=np.uint64)


@dataclass
class SplitResult:
    assignment: list[int] | np.ndarray  # per triplet: TRAIN, VAL or DROPPED
    components: int = 0
    largest_component: int = 0  # in triplets
    carved: bool = False
    target_val: int = 0
    stats: dict = field(default_factory=dict)


def encode_ids(lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Lists of ids -> (flat codes, offsets, sorted distinct ids); a code is the rank of its id."""
    names = sorted({x for xs in lists for x in xs})
    rank = {x: i for i, x in enumerate(names)}
    flat = np.fromiter((rank[x] for xs in lists for x in xs), dtype=np.int64)
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(xs) for xs in lists], out=offsets[1:])
    return flat, offsets, names


def assign_splits(triplet_images: list[list[str]], val_fraction: float, seed: int) -> SplitResult:
    """`triplet_images[i]` lists every image id of triplet i (query, target, negatives)."""
    flat, offsets, names = encode_ids(triplet_images)
    res = assign_split_codes(flat, offsets, len(names), names.__getitem__, val_fraction, seed)
    res.assignment = res.assignment.tolist()
    return res


def assign_split_codes(flat: np.ndarray, offsets: np.ndarray, n_images: int, name: Callable[[int], str],
                       val_fraction: float, seed: int) -> SplitResult:
    """The policy on codes: triplet i's images are `flat[offsets[i]:offsets[i+1]]`, codes in
    `0..n_images-1` ordered as their ids; `name(code)` is the id (hashed for the seeded orders)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(offsets) - 1
    assignment = np.full(n, TRAIN, dtype=np.int8)
    target = int(round(val_fraction * n))
    if n == 0:
        return SplitResult(assignment)
    lengths = np.diff(offsets)
    tri = np.repeat(np.arange(n), lengths)
    first = flat[offsets[:-1]][tri]  # every image links to its triplet's first image
    graph = coo_matrix((np.ones(len(flat), dtype=np.int8), (first, flat)), shape=(n_images, n_images))
    _, label = connected_components(graph, directed=False)
    tri_comp = label[flat[offsets[:-1]]]
    comps, sizes = np.unique(tri_comp, return_counts=True)
    # A component's root is its smallest id: the lowest code carrying its label.
    used = np.zeros(n_images, dtype=bool)
    used[flat] = True
    codes = np.flatnonzero(used)
    labs, first_code = np.unique(label[codes], return_index=True)
    root = np.empty(label.max() + 1, dtype=np.int64)
    root[labs] = codes[first_code]
    roots = root[comps]
    keys = seeded_keys(seed, (name(int(r)) for r in roots))
    order = np.lexsort((roots, keys))
    result = SplitResult(assignment, components=len(comps), largest_component=int(sizes.max()), target_val=target)
    if target == 0:
        return result
    in_val = np.zeros(len(comps), dtype=bool)
    val = 0
    for c, size in zip(order.tolist(), sizes[order].tolist()):
        if val + size <= target:
            in_val[c] = True
            val += size
        if val == target:
            break
    comp_index = np.searchsorted(comps, tri_comp)
    assignment[in_val[comp_index]] = VAL
    if val * 2 < target and not in_val.all():
        train = np.flatnonzero(~in_val)
        biggest = train[np.lexsort((roots[train], sizes[train]))[-1]]  # most triplets, then largest root
        idx = np.flatnonzero(comp_index == biggest)
        _carve(flat, offsets, idx, target - val, seed, name, assignment)
        result.carved = True
    return result


def _carve(flat: np.ndarray, offsets: np.ndarray, idx: np.ndarray, need: int, seed: int,
           name: Callable[[int], str], assignment: np.ndarray) -> None:
    """Grow a region of images breadth-first over triplets until `need` triplets lie wholly inside.
    Triplets are visited in queue order and each one's distinct images in id order."""
    lengths = np.diff(offsets)[idx]
    tri = np.repeat(idx, lengths)
    img = flat[_ranges(offsets[idx], lengths)]
    width = int(img.max()) + 1
    pairs = np.unique(tri * width + img)  # distinct (triplet, image), sorted by triplet then image
    tri, img = pairs // width, pairs % width
    del pairs
    size = np.bincount(tri, minlength=len(offsets) - 1)  # distinct images per triplet
    tri_start = np.searchsorted(tri, np.arange(len(offsets)))  # triplet -> its images, in id order
    by = np.lexsort((tri, img))  # image -> its triplets, ascending
    imgs_sorted, tris_by_img = img[by], tri[by]
    images = np.unique(img)
    img_start = np.searchsorted(imgs_sorted, images)
    img_end = np.searchsorted(imgs_sorted, images, side="right")
    slot = np.full(int(images[-1]) + 1, -1, dtype=np.int64)
    slot[images] = np.arange(len(images))
    keys = seeded_keys(seed, (name(int(c)) for c in images))
    start = int(images[np.lexsort((images, keys))[0]])
    inside = np.zeros(len(images), dtype=bool)
    count = np.zeros(len(offsets) - 1, dtype=np.int64)
    queued = np.zeros(len(offsets) - 1, dtype=bool)
    k = int(slot[start])
    queue: deque[int] = deque(tris_by_img[img_start[k]:img_end[k]].tolist())
    queued[list(queue)] = True
    full = 0
    while queue and full < need:
        i = queue.popleft()
        for k in slot[img[tri_start[i]:tri_start[i + 1]]].tolist():
            if inside[k]:
                continue
            inside[k] = True
            js = tris_by_img[img_start[k]:img_end[k]]
            count[js] += 1
            full += int(np.count_nonzero(count[js] == size[js]))
            fresh = js[~queued[js]]
            queued[fresh] = True
            queue.extend(fresh.tolist())
    whole = count[idx] == size[idx]
    assignment[idx[whole]] = VAL
    assignment[idx[~whole & (count[idx] > 0)]] = DROPPED


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated `arange(starts[k], starts[k] + lengths[k])` over k."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))


def confine_codes(q: np.ndarray, t: np.ndarray, hn: np.ndarray, hn_offsets: np.ndarray, assignment: np.ndarray,
                  order_key: np.ndarray, n_images: int) -> np.ndarray:
    """Step 4 on codes: a keep mask over `hn` (triplet i's negatives are `hn[hn_offsets[i]:hn_offsets[i+1]]`).
    `order_key` is each triplet's seeded key (`seeded_key(seed, f"{q}_{t}")`); ties go to the lower index."""
    n = len(q)
    side = np.full(n_images, -2, dtype=np.int8)
    ok = assignment != DROPPED
    side[q[ok]] = assignment[ok]
    side[t[ok]] = assignment[ok]
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), order_key))] = np.arange(n)
    lengths = np.diff(hn_offsets)
    tri = np.repeat(np.arange(n), lengths)
    sel = np.flatnonzero(ok[tri])
    codes, ranks = hn[sel], rank[tri[sel]]
    o = np.lexsort((ranks, codes))  # per image, the first triplet in seeded order comes first
    _, first = np.unique(codes[o], return_index=True)
    first = sel[o[first]]
    unset = side[hn[first]] == -2
    side[hn[first[unset]]] = assignment[tri[first[unset]]]
    position = np.arange(len(hn)) - np.repeat(hn_offsets[:-1], lengths)
    keep = (position == 0) | (side[hn] == assignment[tri])
    keep[~ok[tri]] = True  # dropped triplets are not written; leave them alone
    return keep


def confine_negatives(triplets: list[dict], assignment: list[int], seed: int) -> int:
    """Drop from each triplet's `hn_ids` the images that belong to the other split (step 4).
    Mutates the triplets; returns how many negatives were removed."""
    lists = [[t["q_id"], t["t_id"], *t["hn_ids"]] for t in triplets]
    flat, offsets, names = encode_ids(lists)
    q, t = flat[offsets[:-1]], flat[offsets[:-1] + 1]
    hn = np.concatenate([flat[offsets[i] + 2:offsets[i + 1]] for i in range(len(triplets))] or [np.zeros(0, int)])
    hn_offsets = np.zeros(len(triplets) + 1, dtype=np.int64)
    np.cumsum([len(x["hn_ids"]) for x in triplets], out=hn_offsets[1:])
    keys = seeded_keys(seed, (f"{x['q_id']}_{x['t_id']}" for x in triplets))
    keep = confine_codes(q, t, hn, hn_offsets, np.asarray(assignment, dtype=np.int8), keys, len(names))
    removed = 0
    for i, (x, a) in enumerate(zip(triplets, assignment)):
        if a == DROPPED:
            continue
        k = keep[hn_offsets[i]:hn_offsets[i + 1]]
        removed += int(np.count_nonzero(~k))
        x["hn_ids"] = [h for h, kk in zip(x["hn_ids"], k) if kk]
    return removed
