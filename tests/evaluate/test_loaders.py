"""Readers of the official formats: clear errors for missing files, crops, filtering, templates."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from megapairs.configbase import ConfigError
from megapairs.evaluate import circo, cirr, fashioniq, genecis, mmeb, templates, triplets
from megapairs.evaluate.common import Crop, DataError, EvalOptions
from megapairs.evaluate.context import load_crop
from megapairs.evaluate.runner import evaluate


def test_circo_missing_annotation_names_path(circo_dir: Path):
    path = circo_dir / "annotations" / "val.json"
    path.unlink()
    with pytest.raises(DataError) as e:
        circo.load_queries(circo_dir, "val")
    assert str(path) in str(e.value)


def test_circo_missing_image_info_names_path(circo_dir: Path, retriever, tmp_path: Path):
    path = circo_dir / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    path.unlink()
    with pytest.raises(DataError, match=re.escape(str(path))):
        evaluate("circo", circo_dir, retriever, {"cache_dir": str(tmp_path), "progress": False})


def test_circo_missing_gallery_image(circo_dir: Path):
    img = circo_dir / "COCO2017_unlabeled" / "unlabeled2017" / "000000000101.png"
    img.unlink()
    with pytest.raises(DataError, match=re.escape(str(img))):
        circo.load_gallery(circo_dir)


def test_circo_wrong_fields(circo_dir: Path):
    (circo_dir / "annotations" / "val.json").write_text('[{"id": 0}]')
    with pytest.raises(DataError, match="lacks field"):
        circo.load_queries(circo_dir, "val")


def test_cirr_missing_captions_lists_candidates(cirr_dir: Path):
    (cirr_dir / "captions" / "cap.rc2.val.json").unlink()
    with pytest.raises(DataError) as e:
        cirr.load(cirr_dir, "val")
    assert str(cirr_dir / "captions" / "cap.rc2.val.json") in str(e.value)
    assert str(cirr_dir / "cirr" / "captions" / "cap.rc2.val.json") in str(e.value)


def test_cirr_missing_images(cirr_dir: Path):
    import shutil

    shutil.rmtree(cirr_dir / "img_raw")
    with pytest.raises(DataError, match="NLVR2"):
        cirr.load(cirr_dir, "val")


def test_cirr_loader_reads_official_layout(cirr_dir: Path):
    rows, names, paths = cirr.load(cirr_dir, "val")
    assert len(rows) == 3 and len(names) == 12
    assert paths[0] == cirr_dir / "img_raw" / "dev" / f"{names[0]}.png"


def test_fashioniq_missing_split_names_path(fiq_dir: Path):
    path = fiq_dir / "image_splits" / "split.shirt.val.json"
    path.unlink()
    with pytest.raises(DataError, match=re.escape(str(path))):
        fashioniq.load_category(fiq_dir, "shirt", "val")


def test_fashioniq_missing_image(fiq_dir: Path, retriever, tmp_path: Path):
    (fiq_dir / "images" / "BDR0003.png").unlink()
    with pytest.raises(DataError, match=re.escape(str(fiq_dir / "images" / "BDR0003.png"))):
        evaluate("fashioniq", fiq_dir, retriever, {"cache_dir": str(tmp_path), "progress": False})


def test_genecis_missing_task_and_image(genecis_dir: Path):
    (genecis_dir / "genecis" / "change_object.json").unlink()
    with pytest.raises(DataError, match=re.escape(str(genecis_dir / "genecis" / "change_object.json"))):
        genecis.load_task(genecis_dir, "change_object")
    finder = genecis.ImageFinder(genecis_dir, None)
    with pytest.raises(DataError, match="999.jpg"):
        finder.item({"image_id": 999, "instance_bbox": [0, 0, 1, 1]})


def test_genecis_modal_gallery_filter():
    rows = [{"gallery": [1, 2]}, {"gallery": [1, 2]}, {"gallery": [1]}, {"gallery": [1, 2, 3]}]
    assert genecis.modal_gallery(rows) == rows[:2]
    tie = [{"gallery": [1]}, {"gallery": [1, 2]}]
    assert genecis.modal_gallery(tie) == tie[:1]  # equal counts: the shorter length, like np.unique+argmax


def test_genecis_crop_geometry(tmp_path: Path):
    # 100x50 image: left half red, right half blue. Box (40, 10, 20, 10), dilation 0.7:
    # left = 40 - 14 = 26, top = 10 - 7 = 3, right = min(100, 26 + 34) = 60, bottom = min(50, 3 + 17) = 20
    arr = np.zeros((50, 100, 3), dtype=np.uint8)
    arr[:, :50] = (255, 0, 0)
    arr[:, 50:] = (0, 0, 255)
    Image.fromarray(arr).save(tmp_path / "vg.png")
    im = load_crop(tmp_path / "vg.png", Crop(40, 10, 20, 10))
    assert im.size == (34, 34)  # 34 x 17 crop padded to a square
    px = np.asarray(im)
    assert (px[0] == 0).all() and (px[-1] == 0).all()  # black bands above and below
    assert tuple(px[8 + 8, 0]) == (255, 0, 0) and tuple(px[8 + 8, 33]) == (0, 0, 255)
    assert load_crop(tmp_path / "vg.png", Crop(40, 10, 20, 10, pad_square=False)).size == (34, 17)


def test_mmeb_requested_dataset_missing(mmeb_dir: Path):
    opts = EvalOptions(datasets=("CIRR", "OK-VQA"))
    names = mmeb.selected(mmeb_dir, opts)
    with pytest.raises(DataError, match=re.escape(str(mmeb_dir / "OK-VQA.parquet"))):
        [mmeb.dataset_file(mmeb_dir, n) for n in names]


def test_mmeb_reads_parquet_and_jsonl(mmeb_dir: Path):
    assert mmeb.selected(mmeb_dir, EvalOptions()) == ["ImageNet-1K", "CIRR"]
    rows = mmeb.load_rows(mmeb.dataset_file(mmeb_dir, "CIRR"))
    assert len(rows) == 2 and len(mmeb.candidates(rows[0])) == 3
    assert mmeb.clean(rows[0]["qry_text"]).startswith("Given an image")
    assert mmeb.candidates({"tgt_text": "same", "tgt_img_path": ["a", "b"]}) == [("same", "a"), ("same", "b")]
    with pytest.raises(DataError, match="no MMEB dataset"):
        mmeb.selected(mmeb_dir / "nothing", EvalOptions())


def test_triplets_loader(triplets_file: Path, tmp_path: Path):
    rows = triplets.load_rows(triplets_file.parent)
    assert len(rows) == 3 and rows[0]["q_text"] == ["make it red", "paint it red"]
    q, unit_query = triplets.mode_queries(rows, triplets.build_units(rows, "first"), "image")
    assert triplets.build_queries(rows, "image", "first") == q
    assert [x["image"] for x in q] == ["images/i0.png", "images/i2.png"] and unit_query.tolist() == [0, 1, 0]
    questions, unit_question = triplets.unit_answers(rows, triplets.build_units(rows, "first"))
    # rows 0 and 2 share their query image but not their instruction: each keeps its own answer
    assert [sorted(x["targets"]) for x in questions] == [["images/i1.png"], ["images/i3.png"], ["images/i4.png"]]
    assert unit_question.tolist() == [0, 1, 2]
    alias = tmp_path / "alias.jsonl"
    alias.write_text('{"query_image": "a.png", "query_texts": "x", "target_image": "b.png"}\n')
    assert triplets.load_rows(alias)[0]["q_text"] == ["x"]
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "missing.parquet"))):
        triplets.load_rows(tmp_path / "missing.parquet")


def test_missing_data_folder(retriever, tmp_path: Path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nope"))):
        evaluate("circo", tmp_path / "nope", retriever, {"progress": False})
    with pytest.raises(ValueError, match="unknown benchmark"):
        evaluate("imagenet", tmp_path, retriever)


def test_templates():
    assert templates.resolve("circo", None)[0] == "megapairs"
    name, fmt = templates.resolve("fashioniq", None)
    assert templates.fill(fmt, c1="is red", c2="has a collar") == "is red, and has a collar"
    assert templates.resolve("cirr", "{caption}!") == ("custom", "{caption}!")
    _, g = templates.resolve("genecis", "describe")
    assert templates.fill(g, task="change_object", condition="dog") == "Find a similar image that also has a dog."
    with pytest.raises(ConfigError, match="known"):
        templates.resolve("circo", "nope")
    with pytest.raises(ConfigError, match="only"):
        templates.fill("{nope}", caption="x")


def test_options_validation():
    with pytest.raises(ConfigError, match="reference_policy"):
        EvalOptions(reference_policy="drop")
    with pytest.raises(ConfigError, match="query_modes"):
        EvalOptions.from_dict({"query_modes": ["video"]})
    with pytest.raises(ConfigError, match="unknown field"):
        EvalOptions.from_dict({"spilt": "val"})
    assert EvalOptions(batch_size=4).config_hash() == EvalOptions(batch_size=64).config_hash()


def test_any_missing_gallery_image_is_named(circo_dir: Path, retriever, tmp_path: Path):
    img = circo_dir / "COCO2017_unlabeled" / "unlabeled2017" / "000000000108.png"
    img.unlink()
    with pytest.raises(DataError, match=re.escape(str(img))):
        evaluate("circo", circo_dir, retriever, {"cache_dir": str(tmp_path), "progress": False})
