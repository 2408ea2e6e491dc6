"""The CLI as users drive it: run, status, inspect, report, and clear errors."""

from __future__ import annotations

from megapairs.cli import main
from tests.conftest import make_image_folder


def test_run_status_inspect_report(tmp_path, tiny_overrides, capsys):
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    args = ["run", "--run", str(run), "--until", "mine", "--preset", "tiny", f"ingest.source={source}",
            *tiny_overrides]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ingest: 12 rows" in out and "pairs page:" in out
    page = (run / "report" / "pairs.html").read_text()
    assert page.count("<img") >= 2 and "found by" in page
    assert main(["status", str(run)]) == 0
    status = capsys.readouterr().out
    assert "corpus       complete  12 rows" in status and "annotations  not started" in status
    assert main(["inspect", str(run / "pairs"), "-n", "1"]) == 0
    assert "hard_negatives" in capsys.readouterr().out
    # A stage command reuses the run's saved config.
    assert main(["mine", "--run", str(run)]) == 0


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["run", "--run", str(tmp_path / "r"), "ingest.source=/no/such/folder"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("megapairs: error:") and "/no/such/folder" in err
    assert main(["embed", "--run", str(tmp_path / "r2"), "--preset", "tiny"]) == 2
    assert "needs 'corpus'" in capsys.readouterr().err
