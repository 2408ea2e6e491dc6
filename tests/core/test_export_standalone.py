"""`python -m megapairs.export.cli` starts from the run's saved config.yaml, as `megapairs export` does:
it finds the export `megapairs run` made instead of refusing it as another configuration's."""

from __future__ import annotations

from megapairs.export.cli import build_config, main as export_main
from tests.core.test_cli_faults_more import exported_run, fingerprint  # noqa: F401  (fixture)


def test_standalone_export_uses_the_runs_saved_export_section(exported_run, capsys) -> None:
    run, _ = exported_run
    assert build_config([], run=run).val_fraction == 0.25  # the tiny preset's, saved in config.yaml
    before = fingerprint(run / "dataset")
    assert export_main(["--run", str(run)]) == 0, capsys.readouterr().err  # complete and matching: a no-op
    assert fingerprint(run / "dataset") == before
    # overrides go on top of the saved section: a changed field is a changed config
    assert export_main(["--run", str(run), "val_fraction=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("megapairs-export: error: ") and "different configuration" in err
    assert fingerprint(run / "dataset") == before


def test_a_whole_pipeline_config_file_gives_its_export_section(tmp_path) -> None:
    """--config takes a pipeline YAML (as `megapairs export --config` does) as well as the export
    fields alone: a file with other sections is not read as export fields."""
    whole = tmp_path / "pipeline.yaml"
    whole.write_text("executor: local\nmine:\n  k: 5\n")
    assert build_config([], str(whole)).image_size == build_config([]).image_size  # no export section: defaults
    whole.write_text("mine:\n  k: 5\nexport:\n  image_size: 256\n")
    assert build_config([], str(whole)).image_size == 256
    alone = tmp_path / "fields.yaml"
    alone.write_text("image_size: 128\n")
    assert build_config([], str(alone)).image_size == 128
