"""Config composition and artifact bookkeeping."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from megapairs.artifacts import Artifact, ArtifactError, open_complete, write_npy, write_table
from megapairs.config import load_config
from megapairs.configbase import ConfigError


def test_presets_overrides_and_hashes(tmp_path):
    c = load_config("demo", overrides=["mine.k=7", "ingest.limit=100"])
    assert c.mine.k == 7 and c.ingest.limit == 100 and c.embed.image == "offline:label-bridge"
    with pytest.raises(ConfigError, match="mine.kk"):
        load_config("demo", overrides=["mine.kk=3"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("demo", overrides=["mine.k=zero"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")
    # Operational fields do not change a stage's identity; semantic ones do.
    base = load_config("demo").embed.config_hash()
    assert load_config("demo", overrides=["embed.batch_size=3"]).embed.config_hash() == base
    assert load_config("demo", overrides=["embed.dtype=float32"]).embed.config_hash() != base
    f = tmp_path / "c.yaml"
    f.write_text("mine:\n  k: 11\n")
    assert load_config("paper", f).mine.k == 11 and load_config("paper", f).mine.bands["image"] == [0.8, 0.96]


def test_artifact_lineage_markers_and_manifest(tmp_path):
    art = Artifact(tmp_path / "a", config_hash="h1")
    art.begin()
    write_table(art.shard_path(0), pa.table({"x": [1, 2]}))
    write_npy(art.path / "v" / "part-00000.npy", np.zeros((2, 3), np.float16))
    assert not art.is_done(0)
    art.mark_done(0, 2, ["part-00000.parquet"])
    assert art.done_shards() == [0]
    with pytest.raises(ArtifactError, match="not complete"):
        open_complete(art.path)
    art.write_manifest(kind="test", num_shards=1)
    assert open_complete(art.path).read_all().column("x").to_pylist() == [1, 2]
    with pytest.raises(ArtifactError, match="different configuration"):
        Artifact(tmp_path / "a", config_hash="h2").begin()
    Artifact(tmp_path / "a", config_hash="h2").begin(overwrite=True)
    assert not (tmp_path / "a" / "part-00000.parquet").exists()
    assert not list((tmp_path / "a").glob(".*.tmp"))  # no temporary files left behind


def test_overrides_keep_spec_strings_and_parse_mappings():
    from megapairs.configbase import parse_override

    assert parse_override("annotate.writer=template:") == (["annotate", "writer"], "template:")
    assert parse_override("embed.image=hf:openai/clip-vit-base-patch16")[1] == "hf:openai/clip-vit-base-patch16"
    assert parse_override("mine.bands={image: [0.1, 0.9]}")[1] == {"image": [0.1, 0.9]}
    assert parse_override("mine.num_queries=null")[1] is None
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_override("mine.k")
