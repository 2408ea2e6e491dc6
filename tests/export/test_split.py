"""The image-level split: whole components, carving a giant component, determinism."""

from __future__ import annotations

import random

import pytest

from megapairs.export.split import DROPPED, TRAIN, VAL, assign_splits


def _images_by_split(triplets, assignment):
    out = {TRAIN: set(), VAL: set()}
    for imgs, a in zip(triplets, assignment):
        if a != DROPPED:
            out[a].update(imgs)
    return out


def _clusters(n_clusters=10, per=4):
    trips = []
    for c in range(n_clusters):
        imgs = [f"c{c}i{k}" for k in range(per)]
        for t in imgs[1:]:
            trips.append([imgs[0], t, *[x for x in imgs if x not in (imgs[0], t)]])
    return trips


def test_components_go_whole_to_one_split():
    trips = _clusters()
    res = assign_splits(trips, 0.2, seed=1)
    assert not res.carved and res.components == 10
    by = _images_by_split(trips, res.assignment)
    assert not (by[TRAIN] & by[VAL])
    assert res.assignment.count(VAL) == 6  # 20% of 30, two clusters of 3
    for c in range(10):
        assert len({a for t, a in zip(trips, res.assignment) if t[0] == f"c{c}i0"}) == 1


def test_deterministic_and_independent_of_input_order():
    trips = _clusters()
    a = assign_splits(trips, 0.2, seed=3).assignment
    assert a == assign_splits(trips, 0.2, seed=3).assignment
    order = list(range(len(trips)))
    random.Random(0).shuffle(order)
    b = assign_splits([trips[i] for i in order], 0.2, seed=3).assignment
    assert [b[order.index(i)] for i in range(len(trips))] == a


def test_giant_component_is_carved_without_leakage():
    rng = random.Random(0)
    images = [f"img{i:03d}" for i in range(80)]
    trips = []
    for i in range(300):  # a dense random graph: one component
        q, t, *hn = rng.sample(images, 6)
        trips.append([q, t, q, *hn])
    res = assign_splits(trips, 0.1, seed=0)
    assert res.components == 1 and res.carved
    by = _images_by_split(trips, res.assignment)
    assert not (by[TRAIN] & by[VAL])
    assert res.assignment.count(VAL) >= 30  # the budget is filled
    assert res.assignment.count(TRAIN) > 0
    assert res.assignment == assign_splits(trips, 0.1, seed=0).assignment


def test_zero_fraction_keeps_everything_in_train():
    trips = _clusters(3)
    assert set(assign_splits(trips, 0.0, seed=0).assignment) == {TRAIN}
    assert assign_splits([], 0.5, seed=0).assignment == []


def test_negatives_follow_the_split_of_queries_and_targets():
    from megapairs.export.split import DROPPED, TRAIN, VAL, confine_negatives

    trip = [
        {"q_id": "a", "t_id": "b", "hn_ids": ["a", "c", "x", "y"]},  # c is a validation query
        {"q_id": "c", "t_id": "d", "hn_ids": ["c", "a", "x", "z"]},  # a is a train query
        {"q_id": "e", "t_id": "f", "hn_ids": ["e", "y"]},
    ]
    assignment = [TRAIN, VAL, DROPPED]
    removed = confine_negatives(trip, assignment, seed=0)
    assert trip[0]["hn_ids"][0] == "a" and "c" not in trip[0]["hn_ids"]
    assert trip[1]["hn_ids"][0] == "c" and "a" not in trip[1]["hn_ids"]
    # x is a negative-only image used by both: it stays on exactly one side.
    assert ("x" in trip[0]["hn_ids"]) != ("x" in trip[1]["hn_ids"])
    train = {i for t in trip[:1] for i in (t["q_id"], t["t_id"], *t["hn_ids"])}
    val = {i for t in trip[1:2] for i in (t["q_id"], t["t_id"], *t["hn_ids"])}
    assert not train & val and removed == 3


def _random_triplets(rng: random.Random, n: int, n_images: int, extra: int) -> list[list[str]]:
    names = [f"{rng.getrandbits(40):010x}"[: rng.randint(3, 10)] + str(i) for i in range(n_images)]
    out = []
    for _ in range(n):
        q, t = rng.sample(names, 2)
        out.append([q, t, *rng.sample(names, extra)])
    return out


@pytest.mark.parametrize("case", range(40))
def test_vectorised_split_equals_the_row_by_row_reference(case):
    """Same assignment, components, carve and confinement as the 0.2 union-find code, on graphs from
    many small components to one giant component (carved), ids of mixed lengths."""
    from tests.export import _reference as ref

    from megapairs.export.split import confine_negatives

    rng = random.Random(case)
    n = rng.randint(1, 120)
    trips = _random_triplets(rng, n, rng.randint(3, 3 * n + 3), extra=rng.choice([0, 0, 2]))
    frac, seed = rng.choice([0.0, 0.1, 0.25, 0.5]), rng.randint(0, 5)
    new, old = assign_splits(trips, frac, seed), ref.assign_splits(trips, frac, seed)
    assert new.assignment == old.assignment
    assert (new.components, new.largest_component, new.carved, new.target_val) == (
        old.components, old.largest_component, old.carved, old.target_val)
    qt = [[t[0], t[1]] for t in trips]
    split = ref.assign_splits(qt, frac, seed).assignment
    rows = [{"q_id": t[0], "t_id": t[1], "hn_ids": [t[0], *rng.sample([x for s in trips for x in s], 3)]}
            for t in trips]
    a, b = [dict(r, hn_ids=list(r["hn_ids"])) for r in rows], [dict(r, hn_ids=list(r["hn_ids"])) for r in rows]
    assert confine_negatives(a, split, seed) == ref.confine_negatives(b, split, seed)
    assert a == b
