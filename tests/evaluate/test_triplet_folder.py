"""An exported dataset folder is evaluated on its validation split, each row read once."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from megapairs.evaluate.triplets import load_rows


def test_dataset_folder_reads_validation_parquet_once(tmp_path):
    rows = [{"q_img": "images/a.jpg", "q_text": ["x", "y"], "t_img": "images/b.jpg", "hns": ["images/a.jpg"]},
            {"q_img": "images/c.jpg", "q_text": ["z"], "t_img": "images/d.jpg", "hns": ["images/c.jpg"]}]
    for split, data in (("train", rows * 3), ("validation", rows)):
        (tmp_path / split).mkdir()
        pq.write_table(pa.Table.from_pylist(data), tmp_path / split / "part-00000.parquet")
        (tmp_path / split / "part-00000.jsonl").write_text("\n".join(json.dumps(r) for r in data))
    got = load_rows(tmp_path)
    assert [r["q_img"] for r in got] == ["images/a.jpg", "images/c.jpg"]
    (tmp_path / "validation" / "part-00000.parquet").unlink()  # JSONL alone still works
    assert len(load_rows(tmp_path)) == 2
