"""`megapairs status` with one damaged artifact: that one is reported as damaged (which file, why,
what to do) and the others are still shown."""

from __future__ import annotations

import json

from megapairs.artifacts import Artifact
from megapairs.cli import main
from tests.annotate.helpers import make_run


def test_a_damaged_manifest_is_reported_and_the_other_stages_still_shown(tmp_path, capsys):
    make_run(tmp_path)
    manifest = Artifact(tmp_path / "pairs").manifest_path
    manifest.write_text('{"kind": "pairs", "rows"')  # cut short
    assert main(["status", str(tmp_path)]) == 2  # something needs repair
    out, err = capsys.readouterr()
    assert err.startswith(f"megapairs: error: {manifest} is damaged")
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert "complete" in lines["corpus"] and "16 rows" in lines["corpus"]
    assert "damaged" in lines["pairs"] and str(manifest) in lines["pairs"] and "not JSON" in lines["pairs"]
    assert f"megapairs mine --run {tmp_path}" in lines["pairs"]  # what to do about it
    assert "not started" in lines["annotations"]

    assert main(["status", str(tmp_path), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)["artifacts"]
    assert data["corpus"]["state"] == "complete"
    assert data["pairs"]["state"] == "damaged" and data["pairs"]["path"] == str(manifest)
    assert data["pairs"]["reason"].startswith("not JSON")


def test_a_manifest_of_the_wrong_shape_and_a_damaged_marker_are_reported(tmp_path, capsys):
    make_run(tmp_path)
    corpus = Artifact(tmp_path / "corpus")
    corpus.manifest_path.write_text("[]")  # valid JSON, not a manifest
    pairs = Artifact(tmp_path / "pairs")
    pairs.manifest_path.unlink()  # partial: its markers are read
    pairs.marker_path(1).write_text("{")
    assert main(["status", str(tmp_path), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)["artifacts"]
    assert data["corpus"]["state"] == "damaged" and data["corpus"]["path"] == str(corpus.manifest_path)
    assert "unexpected content" in data["corpus"]["reason"]
    assert data["pairs"]["state"] == "damaged" and data["pairs"]["path"] == str(pairs.marker_path(1))
    assert data["annotations"] == {"state": "not started"}

    pairs.marker_path(1).write_text('{"files": []}')  # JSON, but no row count: that marker is named
    assert main(["status", str(tmp_path), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)["artifacts"]
    assert data["pairs"]["path"] == str(pairs.marker_path(1)) and "unexpected content" in data["pairs"]["reason"]
