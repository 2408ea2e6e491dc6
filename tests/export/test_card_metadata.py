"""The dataset card's YAML header is Hugging Face card metadata, written and read back through
`huggingface_hub.DatasetCard`: licence, task categories, size category, source dataset, data files."""

from __future__ import annotations

import pytest

from megapairs.export.card import card_data, size_category
from tests.export.test_stage import export

huggingface_hub = pytest.importorskip("huggingface_hub")


def test_exported_card_has_hub_metadata(run_root, tmp_path):
    root, _ = run_root
    out = tmp_path / "ds"
    m = export(root, out)
    card = huggingface_hub.DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "unknown"  # a user folder: its licence is not known
    assert data["task_categories"] == ["image-to-image", "image-feature-extraction"]
    assert data["size_categories"] == ["n<1K"] and m["rows"] < 1000
    assert data["source_datasets"] == [(root / "images_src").name]
    assert data["configs"][0]["data_files"][0] == {"split": "train", "path": "train/*.parquet"}
    assert "composed-image-retrieval" in data["tags"] and data["pretty_name"]
    assert "# MegaPairs-format composed image retrieval triplets" in card.text


@pytest.mark.parametrize("source, license", [("openclipart", "cc0-1.0"), ("samples", "other"),
                                             ("/data/photos", "unknown")])
def test_licence_and_source_follow_the_corpus(source, license):
    data = card_data({"rows": 20_000, "upstream_info": {"corpus": {"source": source}}})
    assert data.license == license and data.size_categories == ["10K<n<100K"]
    assert data.source_datasets == [source.rsplit("/", 1)[-1]]


def test_size_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 250_000, 2_000_000)] == \
        ["n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "1M<n<10M"]


def test_mixed_sources():
    mix = [["openclipart", 100], ["icons:Adwaita", 50]]
    data = card_data({"rows": 10, "upstream_info": {"corpus": {"source": mix}}})
    assert data.source_datasets == ["openclipart", "icons:Adwaita"] and data.license == "other"
    data = card_data({"rows": 10, "upstream_info": {"corpus": {"source": [["openclipart", 1], ["/x/mine", 1]]}}})
    assert data.license == "unknown"
