"""Loading the export with Hugging Face datasets (offline), the reader on both layouts, and the validator."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megapairs.artifacts import manifest_file
from megapairs.export import ExportConfig, ExportStage, read_triplets, validate_megapairs
from megapairs.stages import run_stage


@pytest.fixture(scope="module")
def dataset(run_root, tmp_path_factory) -> Path:
    root, _ = run_root
    out = tmp_path_factory.mktemp("load") / "dataset"
    run_stage(ExportStage(root, ExportConfig(val_fraction=0.25, shard_size=4), output=out))
    return out


def test_load_dataset_parquet_and_json_offline(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    cache = str(tmp_path / "cache")
    manifest = json.loads(manifest_file(dataset).read_text())
    files = {s: str(dataset / s / "*.parquet") for s in ("train", "validation")}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
    assert {s: ds[s].num_rows for s in ds} == manifest["splits"]
    row = ds["train"][0]
    assert isinstance(row["q_text"], list) and row["hns"][0] == row["q_img"]
    assert (dataset / row["t_img"]).is_file()
    # the card's YAML header lets the folder load by itself
    whole = datasets.load_dataset(str(dataset), cache_dir=cache)
    assert {s: whole[s].num_rows for s in whole} == manifest["splits"]
    js = datasets.load_dataset("json", data_files={s: str(dataset / "jsonl" / s / "*.jsonl") for s in files},
                               cache_dir=cache)
    assert js["validation"].num_rows == manifest["splits"]["validation"]
    assert js["train"][0]["q_text"] == row["q_text"]


def test_split_folders_are_plain_parquet_datasets(dataset):
    """Only Parquet sits in a split folder: pyarrow reads the folder as it is (JSONL moved to jsonl/)."""
    import pyarrow.dataset as pads

    manifest = json.loads(manifest_file(dataset).read_text())
    for split, n in manifest["splits"].items():
        assert sorted(p.suffix for p in (dataset / split).iterdir()) == [".parquet"] * len(list((dataset / split).iterdir()))
        assert pq.read_table(dataset / split).num_rows == n
        assert pads.dataset(dataset / split, format="parquet").count_rows() == n
        assert sum(1 for line in (dataset / "jsonl" / split).glob("*.jsonl") for _ in line.open()) == n


def test_old_layout_with_jsonl_beside_parquet_still_reads(dataset, tmp_path):
    """Exports before 0.3 kept part-*.jsonl in the split folders: every reader still takes them."""
    import shutil

    from megapairs.evaluate.triplets import load_rows
    from megapairs.train.data import load_triplets

    old = tmp_path / "old"
    shutil.copytree(dataset, old)
    for split in ("train", "validation"):
        for f in (old / "jsonl" / split).glob("*.jsonl"):
            f.rename(old / split / f.name)
    shutil.rmtree(old / "jsonl")
    assert validate_megapairs(old) == []
    assert [r["key"] for r in read_triplets(old)] == [r["key"] for r in read_triplets(dataset)]
    assert len(load_rows(old)) == len(load_rows(dataset)) == len(list(read_triplets(dataset, "validation")))
    rel = {d: [p.replace(str(d.resolve()), "") for p in load_triplets(d).table.column("t_img").to_pylist()]
           for d in (old, dataset)}
    assert rel[old] == rel[dataset] and len(rel[old]) == json.loads(manifest_file(dataset).read_text())["splits"]["train"]
    # a JSONL-only export: its validation rows are found under jsonl/validation
    js = tmp_path / "js"
    shutil.copytree(dataset, js)
    for split in ("train", "validation"):
        shutil.rmtree(js / split)
    assert len(load_rows(js)) == len(load_rows(dataset))
    assert validate_megapairs(js) == []


def test_read_triplets_ours(dataset):
    train = list(read_triplets(dataset))
    val = list(read_triplets(dataset, split="validation"))
    both = list(read_triplets(dataset, split=None))
    assert len(train) + len(val) == len(both) > 0
    for t in train:
        assert Path(t["q_img"]).is_absolute() and Path(t["q_img"]).is_file()
        assert t["hns"][0] == t["q_img"] and all(Path(h).is_file() for h in t["hns"])
        assert t["key"]  # provenance passes through
    one_file = sorted((dataset / "jsonl" / "validation").glob("*.jsonl"))[0]
    from_file = [t["q_img"] for t in read_triplets(one_file)]
    assert from_file == [t["q_img"] for t in val][: len(from_file)]


def _released(tmp_path: Path) -> Path:
    """A folder shaped like the released data: images under images/, a table with relative paths."""
    rel = tmp_path / "MegaPairs"
    (rel / "images" / "000").mkdir(parents=True)
    for name in ("q.jpg", "t.jpg", "n1.jpg", "n2.jpg"):
        (rel / "images" / "000" / name).write_bytes(b"x")
    (rel / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"q_img": "./images/000/q.jpg", "q_text": ["make it red", "now at night"], "t_img": "./images/000/t.jpg",
         "hns": ["./images/000/q.jpg", "./images/000/n1.jpg", "./images/000/n2.jpg"]},
    ]), rel / "data" / "train-00000-of-00001.parquet")
    return rel


def test_read_triplets_released_layout_and_aliases(tmp_path):
    rel = _released(tmp_path)
    (t,) = list(read_triplets(rel))
    assert t["q_img"] == str(rel / "images/000/q.jpg") and t["t_img"] == str(rel / "images/000/t.jpg")
    assert t["hns"] == [str(rel / f"images/000/{n}") for n in ("q.jpg", "n1.jpg", "n2.jpg")]
    assert t["q_text"] == ["make it red", "now at night"]
    # another loader's column names, a single text, and a JSONL file beside its images
    alias = tmp_path / "alias.jsonl"
    alias.write_text(json.dumps({"query_image": "MegaPairs/images/000/q.jpg", "query_texts": "make it red",
                                 "target_image": "MegaPairs/images/000/t.jpg",
                                 "hard_negative_images": ["MegaPairs/images/000/q.jpg"]}) + "\n")
    (a,) = list(read_triplets(alias))
    assert a["q_img"] == t["q_img"] and a["q_text"] == ["make it red"] and a["hns"] == [t["q_img"]]
    assert list(read_triplets(rel, image_root=rel))[0]["t_img"] == t["t_img"]
    assert validate_megapairs(rel) == []


def test_validator_reports_broken_rows_and_leakage(dataset, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    train_file = sorted((bad / "jsonl" / "train").glob("*.jsonl"))[0]
    val_rows = [json.loads(x) for p in sorted((bad / "jsonl" / "validation").glob("*.jsonl")) for x in p.open()]
    rows = [json.loads(x) for x in train_file.open()]
    rows[0]["hns"] = rows[0]["hns"][1:] or ["images/zz/none.jpg"]
    rows[0]["q_text"] = []
    rows[1]["t_img"] = "images/zz/missing.jpg"
    rows[1]["t_id"] = "missing"
    rows.append({**val_rows[0], "key": "leak"})  # a validation image now also in train
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = "\n".join(validate_megapairs(bad))
    assert "hns[0] must be the query image" in problems
    assert "q_text must be a non-empty list" in problems
    assert "does not exist" in problems and "missing.jpg" in problems
    assert "split leakage" in problems
    assert "train: the formats hold different triplets (.jsonl: 9, .parquet: 8)" in problems
    assert "manifest.json says train has 8 triplets, the shards hold 9" in problems
