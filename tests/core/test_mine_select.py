"""Pair selection rules on hand-built neighbour lists."""

from __future__ import annotations

import numpy as np
import pytest

from megapairs.configbase import ConfigError
from megapairs.mine.config import MineConfig
from megapairs.mine.knn import build_index, recall_at_k, search
from megapairs.mine.select import select_pairs


def _unit(rows):
    x = np.asarray(rows, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _setup():
    # 5 images; row 0 is the query. Image view: 1 is a near-duplicate of 0, 2 and 3 in band, 4 far.
    image = _unit([[1, 0, 0], [1, 0.01, 0], [1, 0.5, 0], [1, 0.7, 0.2], [0, 0, 1]])
    caption = _unit([[1, 0], [0, 1], [0.2, 1], [1, 0.6], [1, 0.45]])
    mats = {"image": image, "caption": caption}
    ids = [f"id{i}" for i in range(5)]
    knn = {}
    for v, m in mats.items():
        s, r = search(build_index(m), m[[0]], 5)
        knn[v] = (s, r)
    return mats, ids, knn


def _select(bands, **kw):
    mats, ids, knn = _setup()
    opts = dict(near_duplicate={"image": 0.98}, max_targets=5, num_hard_negatives=3, seed=0)
    opts.update(kw)
    columns, stats = select_pairs(np.array([0]), knn, bands, mats, ids, **opts)
    n = len(columns["query_id"])
    rows = [{k: (v[i].item() if isinstance(v, np.ndarray) else v[i]) for k, v in columns.items()} for i in range(n)]
    return rows, stats


def test_band_self_near_duplicate_and_provenance():
    rows, stats = _select({"image": (0.8, 0.96), "caption": (0.8, 0.99)})
    targets = {r["target_id"]: r for r in rows}
    assert "id0" not in targets  # the query itself
    assert "id1" not in targets  # image score ~1.0: above the band and a near-duplicate
    assert "id4" not in targets or targets["id4"]["found_by"] == ["caption"]
    assert targets["id2"]["found_by"] == ["image"]  # image 0.89; caption 0.2 below band
    assert sorted(targets["id3"]["found_by"]) == ["caption", "image"]  # in both bands
    assert rows[0]["target_id"] == "id3"  # found by two views ranks first
    for r in rows:
        assert r["hard_negatives"][0] == "id0" and r["target_id"] not in r["hard_negatives"]
        assert len(r["hard_negatives"]) == 3 and len(set(r["hard_negatives"])) == 3
        assert r["best_score"] == pytest.approx(r[f"score_{r['best_view']}"])
    assert stats.kept_by_view["image"] == 2
    kept = [r["target_id"] for r in rows]
    for r in rows:  # the query's other kept targets are the first mined negatives
        others = [t for t in kept if t != r["target_id"]]
        assert set(r["hard_negatives"][1 : 1 + len(others)]) == set(others[:2])


def test_cap_and_determinism():
    bands = {"image": (-1.0, 0.999), "caption": (-1.0, 0.999)}
    a, sa = _select(bands, max_targets=2, near_duplicate={})
    b, _ = _select(bands, max_targets=2, near_duplicate={})
    assert a == b and len(a) == 2 and sa.dropped["over_cap"] >= 1
    c, _ = _select(bands, max_targets=2, near_duplicate={}, seed=1)
    assert [r["target_id"] for r in c] == [r["target_id"] for r in a]  # the seed only shuffles negatives


def test_no_pair_in_band_gives_empty_columns():
    rows, stats = _select({"image": (0.9999, 0.99999), "caption": (0.9999, 0.99999)})
    assert rows == [] and stats.kept_by_view == {"image": 0, "caption": 0}
    assert sum(stats.hist_all["image"]) == 4 and sum(stats.hist_kept["image"]) == 0


def test_ivf_recall_on_clustered_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 32))
    x = _unit(centres[rng.integers(0, 50, 5000)] + 0.3 * rng.normal(size=(5000, 32)))
    exact = search(build_index(x, "flat"), x[:200], 10)[1]
    approx = search(build_index(x, "ivf", nprobe=16), x[:200], 10)[1]
    assert recall_at_k(approx, exact) >= 0.95


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match=r"bands\.image"):
        MineConfig(bands={"image": [0.9, 0.8]})
    with pytest.raises(ConfigError, match="band_units"):
        MineConfig(band_units="percent")
    with pytest.raises(ConfigError, match=r"\.k"):
        MineConfig(k=0)


def _twins_setup():
    # query 0; targets 1 and 2 are near-copies of each other (not of the query); 3 is a near-copy of
    # target 1 only in the visual view; 4 is another in-band image.
    image = _unit([[1, 0, 0], [1, 0.6, 0], [1, 0.6, 0.001], [1, 0.1, 0.9], [1, 0.0, 0.7]])
    visual = _unit([[1, 0, 0], [0, 1, 0], [0, 1, 0.001], [0, 1, 0.002], [0, 0.2, 1]])
    mats = {"image": image, "visual": visual}
    knn = {v: search(build_index(m), m[[0]], 5) for v, m in mats.items()}
    return mats, [f"id{i}" for i in range(5)], knn


def test_near_copies_of_a_target_are_neither_second_targets_nor_negatives():
    mats, ids, knn = _twins_setup()
    bands = {"image": (0.5, 0.99), "visual": (-1.0, 0.99)}
    columns, stats = select_pairs(np.array([0]), knn, bands, mats, ids, near_duplicate={"visual": 0.99},
                                  max_targets=5, num_hard_negatives=4, seed=0)
    targets = columns["target_id"]
    assert not {"id1", "id2"} <= set(targets)  # one copy of a picture per query
    assert stats.dropped["near_duplicate_target"] >= 1
    for t, hns in zip(targets, columns["hard_negatives"]):
        copies = {"id1", "id2", "id3"} - {t} if t in ("id1", "id2", "id3") else set()
        assert not copies & set(hns), (t, hns)  # a copy of the positive is no negative
        assert hns[0] == "id0"


class _CountingRows:
    """A view matrix that counts the rows read from it (each read of the float16 store costs)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.shape, self.read = x, x.shape, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, rows):
        out = self.x[rows]
        self.read += len(out)
        return out


def test_selection_reads_about_cap_rows_per_query_and_view():
    rng = np.random.default_rng(0)
    x = {v: _unit(rng.normal(size=(3000, 16)) + 3 * rng.normal(size=(30, 16))[rng.integers(0, 30, 3000)])
         for v in ("image", "visual", "caption")}
    q = np.arange(0, 3000, 3)
    knn = {v: search(build_index(m), m[q], 21) for v, m in x.items()}
    mats = {v: _CountingRows(m) for v, m in x.items()}
    bands = {v: (0.3, 0.99) for v in x}
    columns, _ = select_pairs(q, knn, bands, mats, [str(i) for i in range(3000)],
                              near_duplicate={"image": 0.985, "visual": 0.985}, max_targets=5,
                              num_hard_negatives=5, seed=0)
    assert len(columns["target_id"]) == 5 * len(q)  # every query fills its cap
    # the query row + a window of cap targets per view (+ cap rows for a score no search gave):
    # checking every candidate, as the old selection did, read ~1,100 rows per query
    assert sum(m.read for m in mats.values()) <= 3 * (1 + 5 + 5) * len(q)


def test_examining_in_chunks_gives_the_same_pairs(monkeypatch):
    # windows are gathered and multiplied EXAMINE_CHUNK queries at a time; chunk edges, short
    # windows (queries with fewer found targets than the cap) and the doubled rounds must not matter
    from megapairs.mine import select

    rng = np.random.default_rng(1)
    x = {v: _unit(rng.normal(size=(600, 8)) + 3 * rng.normal(size=(12, 8))[rng.integers(0, 12, 600)])
         for v in ("image", "visual", "caption")}
    x["image"][1::7] = x["image"][::7][: len(x["image"][1::7])]  # near-copies: windows get doubled
    q = np.arange(0, 600, 2)
    knn = {v: search(build_index(m), m[q], 9) for v, m in x.items()}
    bands = {v: (0.5, 0.999) for v in x}
    kw = dict(near_duplicate={"image": 0.985, "visual": 0.985}, max_targets=3, num_hard_negatives=4, seed=3)
    ids = [str(i) for i in range(600)]
    monkeypatch.setattr(select, "EXAMINE_CHUNK", 10_000)
    whole, whole_stats = select_pairs(q, knn, bands, x, ids, **kw)
    assert whole_stats.dropped["near_duplicate_target"] > 0
    for chunk in (1, 7):
        monkeypatch.setattr(select, "EXAMINE_CHUNK", chunk)
        got, stats = select_pairs(q, knn, bands, x, ids, **kw)
        assert stats == whole_stats
        for key, col in whole.items():
            same = col.tobytes() == got[key].tobytes() if isinstance(col, np.ndarray) else col == got[key]
            assert same, (chunk, key)


def test_selector_fed_in_batches_writes_the_same_table_as_arrow_or_lists():
    # the mine stage feeds PairSelector one pipeline step at a time and takes Arrow columns (ids
    # taken in C++); the table must equal select_pairs' Python lists in one call, empty or not
    import pyarrow as pa

    from megapairs.mine.select import PairSelector
    from megapairs.mine.stage import pairs_schema

    rng = np.random.default_rng(2)
    x = {v: _unit(rng.normal(size=(500, 8)) + 3 * rng.normal(size=(10, 8))[rng.integers(0, 10, 500)])
         for v in ("image", "visual", "caption")}
    x["visual"][1::5] = x["visual"][::5][: len(x["visual"][1::5])]
    q = np.arange(0, 500, 3)
    knn = {v: search(build_index(m), m[q], 9) for v, m in x.items()}
    kw = dict(near_duplicate={"image": 0.985, "visual": 0.985}, max_targets=3, num_hard_negatives=4, seed=5)
    ids = [f"img{i}" for i in range(500)]
    schema = pairs_schema(list(x))
    sizes = []
    for bands in ({v: (0.5, 0.999) for v in x}, {v: (0.9999, 0.99999) for v in x}):
        whole, whole_stats = select_pairs(q, knn, bands, x, ids, **kw)
        selector = PairSelector(list(x), bands, x, pa.array(ids), **kw)
        for lo, hi in ((0, 1), (1, 40), (40, 41), (41, len(q))):
            selector.add(q[lo:hi], {v: (s[lo:hi], r[lo:hi]) for v, (s, r) in knn.items()})
        got, stats = selector.result(arrow=True)
        assert isinstance(got["hard_negatives"], pa.Array)
        assert pa.table(got, schema=schema).equals(pa.table(whole, schema=schema))
        assert stats == whole_stats
        sizes.append(len(whole["query_id"]))
    assert sizes[0] > 300 and sizes[1] == 0


@pytest.mark.parametrize("low", [0.5, 0.66])
def test_scores_are_bit_identical_whatever_the_blocks_at_realistic_dimension(monkeypatch, low):
    # BLAS sums a dot product in an order that depends on the matrix shape (at D = 512, not at
    # D = 8): windows sized by the block's longest list made the scores' last bits depend on which
    # queries shared a block (band low 0.66: most queries find fewer targets than the cap)
    from megapairs.mine import select

    rng = np.random.default_rng(4)
    d = 512
    x = {v: _unit(rng.normal(size=(800, d)) + 1.2 * rng.normal(size=(20, d))[rng.integers(0, 20, 800)])
         for v in ("image", "visual", "caption")}
    copies = x["image"][::9][: len(x["image"][1::9])]
    x["image"][1::9] = _unit(copies + 0.0015 * rng.normal(size=copies.shape))  # near-copies: doubled windows
    q = np.arange(0, 800, 2)
    knn = {v: search(build_index(m), m[q], 9) for v, m in x.items()}
    bands = {v: (low, 0.9999) for v in x}
    kw = dict(near_duplicate={"image": 0.985, "visual": 0.985}, max_targets=4, num_hard_negatives=4, seed=3)
    ids = [str(i) for i in range(800)]
    whole, whole_stats = select_pairs(q, knn, bands, x, ids, **kw)
    assert len(whole["target_id"]) > 100 and whole_stats.dropped["near_duplicate"] > 0
    for block, chunk in ((1, 128), (5, 3), (7, 1)):
        monkeypatch.setattr(select, "SELECT_BLOCK", block)
        monkeypatch.setattr(select, "EXAMINE_CHUNK", chunk)
        got, stats = select_pairs(q, knn, bands, x, ids, **kw)
        assert stats == whole_stats
        for key, col in whole.items():
            same = col.tobytes() == got[key].tobytes() if isinstance(col, np.ndarray) else col == got[key]
            assert same, (block, chunk, key)


def test_prefetched_yields_in_order_one_item_ahead():
    import threading
    import time

    from megapairs.mine.stage import prefetched

    started: list[int] = []
    gate = threading.Event()

    def fn(i: int) -> int:
        started.append(i)
        if i == 2:
            gate.wait(5)  # the second item waits until the caller holds the first
        return 10 * i

    out = []
    for value in prefetched(fn, [1, 2, 3]):
        out.append(value)
        if value == 10:
            for _ in range(500):  # the next item is computed while the caller holds this one
                if 2 in started:
                    break
                time.sleep(0.01)
            assert started == [1, 2]  # and at most one ahead: 3 waits for 2, which waits for us
            gate.set()
    assert out == [10, 20, 30] and list(prefetched(fn, [])) == []
