"""Training rows read by columns into a memory-mapped Arrow file give the batches the 0.2 loader
(one `read_triplets` dict per row) gave: same rows, same per-rank batches, same holdout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megapairs.export.reader import read_triplets
from megapairs.export.split import TRAIN, VAL, assign_splits
from megapairs.models.feature_cache import ref_key
from megapairs.train.data import StepSampler, TripletDataset, TripletTable, grouped_holdout, load_triplets
from megapairs.train.evaluate import held_out_rows
from megapairs.train.synthetic import write_synthetic_triplets

COLUMNS = ("q_img", "q_text", "t_img", "hns")


def old_load_triplets(path, image_root=None, split="train") -> TripletTable:
    """The 0.2 loader: a dict per row from `read_triplets`, then one table."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for row in read_triplets(path, split, image_root=image_root):
        for c in COLUMNS:
            cols[c].append(row[c])
    return TripletTable(pa.table(cols), str(path))


def old_grouped_holdout(data: TripletTable, eval_size: int, seed: int):
    n = len(data)
    q = [ref_key(r) for r in data.table.column("q_img").to_pylist()]
    t = [ref_key(r) for r in data.table.column("t_img").to_pylist()]
    hns = [[ref_key(h) for h in (row or [])] for row in data.table.column("hns").to_pylist()]
    side = np.asarray(assign_splits([[a, b] for a, b in zip(q, t)], eval_size / n, seed).assignment)
    train_rows, eval_rows = np.flatnonzero(side == TRAIN), np.flatnonzero(side == VAL)
    val_images = frozenset(x for i in eval_rows for x in (q[i], t[i]))
    train_images = frozenset(x for i in train_rows for x in (q[i], t[i], *hns[i]) if x not in val_images)
    return train_rows, eval_rows, val_images, train_images


def _rows(data: TripletTable) -> list[dict]:
    """The four fields the 0.2 loader had (the row file also carries t_caption, null here)."""
    return [{c: data.row(i)[c] for c in COLUMNS} for i in range(len(data))]


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory) -> Path:
    """An exported-style folder: relative paths (one with `./` and `..`), string q_text in one table
    a JSONL table beside in the old layout, and a second Parquet table without `hns`."""
    root = tmp_path_factory.mktemp("odd")
    src = write_synthetic_triplets(root, n_images=30, n_rows=40)
    rows = pq.read_table(src).to_pylist()
    src.unlink()
    (root / "train").mkdir()
    rows[0]["t_img"] = "./images/../images/" + rows[0]["t_img"].split("/")[-1]
    rows[1]["hns"] = None
    pq.write_table(pa.Table.from_pylist(rows[:25]), root / "train" / "part-00000.parquet")
    one = [{**{k: v for k, v in r.items() if k != "hns"}, "q_text": r["q_text"][0]} for r in rows[25:]]
    pq.write_table(pa.Table.from_pylist(one), root / "train" / "part-00001.parquet")
    (root / "train" / "part-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:25]))
    return root


def test_rows_equal_the_row_by_row_loader(triplets, odd_dataset, tmp_path):
    jsonl = write_synthetic_triplets(tmp_path / "j", fmt="jsonl")
    nulls = tmp_path / "nulls.parquet"  # null instruction lists / items, null negatives
    rows = pq.read_table(triplets).to_pylist()[:3]
    rows[0]["q_text"], rows[1]["q_text"], rows[2]["hns"] = None, ["a", None], None
    pq.write_table(pa.Table.from_pylist(rows), nulls)
    for path in (triplets, jsonl, odd_dataset, nulls):
        new = load_triplets(path)
        assert _rows(new) == _rows(old_load_triplets(path)), path
    mapped = load_triplets(odd_dataset, cache=tmp_path / "c" / "train.arrow")
    assert _rows(mapped) == _rows(old_load_triplets(odd_dataset))
    assert _rows(load_triplets(odd_dataset, image_root=tmp_path)) == _rows(
        old_load_triplets(odd_dataset, image_root=tmp_path))


def test_cache_is_memory_mapped_and_reused_until_the_source_changes(triplets, tmp_path):
    cache = tmp_path / "data" / "train.arrow"
    data = load_triplets(triplets, cache=cache)
    buf = data.table.column("q_img").chunk(0).buffers()[2]
    with open(cache, "rb") as f:  # the strings are the file's bytes, not a copy in process memory
        assert buf.to_pybytes()[:40] in f.read()
    stamp = cache.stat().st_mtime_ns
    load_triplets(triplets, cache=cache)
    assert cache.stat().st_mtime_ns == stamp  # reused
    rows = pq.read_table(triplets).slice(0, 10)
    pq.write_table(rows, triplets.parent / "fewer.parquet")
    os.replace(triplets.parent / "fewer.parquet", tmp_path / "fewer.parquet")
    assert len(load_triplets(tmp_path / "fewer.parquet", cache=cache)) == 10  # another source: rebuilt


@pytest.mark.parametrize("eval_size", [0, 6])
def test_batches_per_rank_equal_the_old_loader(odd_dataset, tmp_path, eval_size):
    old = old_load_triplets(odd_dataset)
    new = load_triplets(odd_dataset, cache=tmp_path / "train.arrow")
    hold = grouped_holdout(new, eval_size, seed=3)
    if eval_size:
        train_rows, eval_rows, val_images, train_images = old_grouped_holdout(old, eval_size, seed=3)
        assert hold.train_rows.tolist() == train_rows.tolist() and hold.eval_rows.tolist() == eval_rows.tolist()
        assert hold.val_images == val_images and hold.train_images <= train_images
        assert held_out_rows(new, hold.eval_rows, hold.train_images) == held_out_rows(old, eval_rows, train_images)
    else:
        train_rows, val_images = np.arange(len(old)), frozenset()
    ds_old = TripletDataset(old, train_rows, num_hard_negatives=4, seed=5, load_images=False, exclude=val_images)
    ds_new = TripletDataset(new, hold.train_rows, num_hard_negatives=4, seed=5, load_images=False,
                            exclude=hold.val_images)
    for rank in (0, 1):
        a = StepSampler(len(ds_old), 8, seed=5, start_step=0, total_steps=9, rank=rank, world_size=2)
        b = StepSampler(len(ds_new), 8, seed=5, start_step=0, total_steps=9, rank=rank, world_size=2)
        for ka, kb in zip(a, b):
            assert [ds_old[k] for k in ka] == [ds_new[k] for k in kb]
