"""A new user's mistakes, tried as they would try them: each one ends in one line naming the cause and
the next step, with the right exit code, and never loses finished work."""

from __future__ import annotations

import errno
import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from megapairs.cli import main
from megapairs.errors import describe
from tests.conftest import make_image_folder
from tests.core.test_cli_faults import one_error_line


@pytest.fixture
def exported_run(tmp_path, tiny_overrides, capsys) -> tuple[Path, list[str]]:
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    args = ["run", "--run", str(run), "--preset", "tiny", "--no-report", f"ingest.source={source}", *tiny_overrides]
    assert main(args) == 0
    capsys.readouterr()
    return run, args


ARTIFACTS = ("corpus", "embeddings", "pairs", "annotations", "dataset")


def fingerprint(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (bookkeeping included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_out_into_the_run_is_refused_and_loses_nothing(exported_run, capsys) -> None:
    from megapairs.export.cli import main as export_main

    run, _ = exported_run
    before = {n: fingerprint(run / n) for n in ARTIFACTS}
    for out in (run / "corpus", run / "pairs" / "sub", run, run.parent):
        assert main(["export", "--run", str(run), "--out", str(out), "--overwrite"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"--out {out}" in line and "give a new folder" in line
        assert export_main(["--run", str(run), "--out", str(out), "--overwrite"]) == 2  # the standalone CLI too
        assert capsys.readouterr().err.startswith("megapairs-export: error: --out")
    assert {n: fingerprint(run / n) for n in ARTIFACTS} == before
    assert (run / "corpus" / ".megapairs" / "manifest.json").exists()


def test_export_out_refuses_a_folder_of_other_files(exported_run, tmp_path, capsys) -> None:
    run, _ = exported_run
    mine = tmp_path / "my-files"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", "--run", str(run), "--out", str(mine), "--overwrite"]) == 2
    assert "other files in it" in one_error_line(capsys.readouterr().err)
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1


def test_export_out_leaves_the_run_config(exported_run, tmp_path, capsys) -> None:
    run, args = exported_run
    saved = (run / "config.yaml").read_bytes()
    out = tmp_path / "big"
    assert main(["export", "--run", str(run), "--out", str(out), "image_size=24"]) == 0
    assert (out / ".megapairs" / "manifest.json").exists()
    assert (run / "config.yaml").read_bytes() == saved
    capsys.readouterr()
    assert main(["run", "--run", str(run), "--no-report"]) == 0  # a plain rerun is not a config change
    assert main(["export", "--run", str(run), "--out", str(out), "image_size=24"]) == 0  # resumes (complete)


def test_a_config_fixed_after_a_failed_first_shard_is_accepted(tmp_path, capsys) -> None:
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    base = ["ingest", "--run", str(run), "--preset", "tiny", f"ingest.source={source}"]
    assert main([*base, f"ingest.exclude=[{tmp_path / 'no-such-list.txt'}]"]) == 2  # fails in shard 0
    assert "no-such-list.txt" in one_error_line(capsys.readouterr().err)
    assert (run / "corpus" / ".megapairs" / "lineage.json").exists()  # started, nothing finished
    assert main(base) == 0  # the fixed config takes the folder over
    assert json.loads((run / "corpus" / ".megapairs" / "manifest.json").read_text())["rows"] == 12
    # Once a shard has finished, a config change is refused again.
    (run / "corpus" / ".megapairs" / "manifest.json").unlink()  # as if interrupted after shard 0
    assert main([*base, "ingest.shard_size=5"]) == 2
    assert "different configuration" in one_error_line(capsys.readouterr().err)


def test_enumerated_evaluate_options_name_the_allowed_values(tmp_path, monkeypatch, capsys) -> None:
    import megapairs.models.base as base

    def no_model(*a, **k):
        raise AssertionError("the model must not load before the options are checked")

    monkeypatch.setattr(base, "load_retriever", no_model)
    common = ["--data", str(tmp_path), "--model", "clip:x", "--no-progress"]
    for argv, words in ((["--benchmark", "circo", "--split", "bogus"], ("'bogus'", "val, test")),
                        (["--benchmark", "triplets", "--split", "train"], ("'train'", "val")),
                        (["--benchmark", "fashioniq", "--categories", "dress,hat"], ("hat", "dress, shirt, toptee")),
                        (["--benchmark", "circo", "--tasks", "focus_object"], ("genecis only",)),
                        (["--benchmark", "triplets", "--query-modes", "composed,audio"], ("query_modes", "text"))):
        assert main(["evaluate", *argv, *common]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert all(w in line for w in words), line


def test_train_errors_are_one_line_naming_train_fields(tmp_path, capsys) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text(json.dumps({"q_img": "a.png", "q_text": ["x"], "t_img": "b.png"}) + "\n")
    common = ["train", "--data", str(data), "--model", "offline:default", "--out", str(tmp_path / "o")]
    for extra, words in ((["temperature=-1"], ("train.temperature",)), (["lr"], ("train override 'lr'", "lr=1e-5")),
                         (["bogus=1"], ("train.bogus",))):
        assert main([*common, *extra]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert all(w in line for w in words), line


def test_triplet_row_missing_a_field_names_its_table(tmp_path) -> None:
    from megapairs.export.reader import read_triplets

    table = tmp_path / "train" / "part-00000.jsonl"
    table.parent.mkdir()
    table.write_text(json.dumps({"q_img": "a.png", "q_text": ["x"], "t_img": "b.png"}) + "\n"
                     + json.dumps({"q_img": "a.png", "q_text": ["y"]}) + "\n")
    with pytest.raises(Exception) as ei:
        list(read_triplets(tmp_path))
    code, line = describe(ei.value)
    assert code == 2 and f"{table} row 1" in line and "'t_img'" in line and "unexpected" not in line


def test_empty_or_missing_model_specs_are_one_short_line(tmp_path, capsys) -> None:
    gallery = make_image_folder(tmp_path / "g", n_per=1)
    for model, words in (("clip:", "names no model"), (f"clip:{tmp_path / 'no-model'}", "does not exist"),
                         ("ckpt:", "names no folder"), ("clip:./not/here", "does not exist")):
        assert main(["index", "--gallery", str(gallery), "--out", str(tmp_path / "idx"), "--model", model]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert words in line and len(line) < 240, line
    from megapairs.embed.backends import build_image_encoder

    with pytest.raises(Exception) as ei:
        build_image_encoder("hf:")
    assert describe(ei.value) == (2, describe(ei.value)[1]) and "names no model" in describe(ei.value)[1]


def test_webdataset_without_images_is_not_a_silent_success(tmp_path, capsys) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"{s:05d}.tar", "w") as tar:
            for i in range(3):
                data = f"caption {s} {i}".encode()
                info = tarfile.TarInfo(f"sample{s}{i}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for src in (shards, shards / "00000.tar"):
        assert main(["ingest", "--run", str(tmp_path / f"r{src.suffix}"), "--preset", "tiny",
                     f"ingest.source={src}"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "0 usable items" in line and "image" in line and ".txt" in line


def test_an_empty_corpus_fails_at_ingest(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ingest", "--run", str(tmp_path / "r"), "--preset", "tiny", f"ingest.source={empty}"]) == 2
    assert "0 usable image(s)" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "r" / "corpus" / ".megapairs" / "manifest.json").exists()


def test_damaged_shard_names_file_and_marker_and_the_hint_works(exported_run, capsys) -> None:
    run, args = exported_run
    shard = run / "corpus" / "part-00000.parquet"
    good = pq.read_table(shard)
    shard.write_bytes(shard.read_bytes()[:100])  # cut short (a full disk, a killed copy)
    assert main(["embed", "--run", str(run), "--overwrite"]) == 2
    line = one_error_line(capsys.readouterr().err)
    marker = run / "corpus" / ".megapairs" / "done" / "part-00000.json"
    assert str(shard) in line and str(marker) in line and f"megapairs ingest --run {run}" in line
    marker.unlink()  # what the line says to do
    assert main(["ingest", "--run", str(run)]) == 0
    assert pq.read_table(shard).equals(good)  # the same rows again
    assert main(["embed", "--run", str(run), "--overwrite"]) == 0


def test_damaged_export_shard_names_its_marker(exported_run, capsys) -> None:
    from megapairs.errors import damaged_parquet

    run, _ = exported_run
    part = sorted((run / "dataset" / "validation").glob("part-*.parquet"))[0]
    markers = run / "dataset" / ".megapairs" / "done"
    owner = next(m for m in markers.glob("*.json") if str(part.relative_to(run / "dataset"))
                 in json.loads(m.read_text())["files"])
    line = damaged_parquet(part, ValueError("Parquet magic bytes not found in footer")).line()
    assert str(owner) in line and "megapairs export" in line


def test_library_errors_get_a_next_step(tmp_path) -> None:
    import numpy as np
    import pyarrow as pa

    bad = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), bad)
    bad.write_bytes(bad.read_bytes()[:-12] + b"\0" * 8 + b"PAR1")  # thrift footer garbage
    for exc_of in (lambda: pq.read_table(bad),):
        with pytest.raises(Exception) as ei:
            exc_of()
        code, line = describe(ei.value)
        assert code == 2 and str(bad) in line and "damaged" in line and "unexpected" not in line

    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/pairs/part-00003.parquet")
    code, line = describe(full)
    assert code == 1 and "disk is full" in line and "part-00003" in line and "rerun" in line

    torch = pytest.importorskip("torch")
    code, line = describe(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert code == 1 and "batch size" in line and "unexpected" not in line

    faiss = pytest.importorskip("faiss")
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(4), 4, 10)
    with pytest.raises(RuntimeError) as ei:
        index.train(np.zeros((2, 4), "float32"))
    code, line = describe(ei.value)
    assert code == 1 and line.startswith("FAISS failed: Number of training points (2)") and "Error in" not in line

    code, line = describe(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert code == 1 and "is the server running" in line
    httpx = pytest.importorskip("httpx")
    from megapairs.annotate.llamacpp import free_port

    url = f"http://127.0.0.1:{free_port()}/v1/models"
    with pytest.raises(httpx.ConnectError) as ei:
        httpx.get(url, timeout=2)
    code, line = describe(ei.value)
    assert code == 1 and url in line and "is the server running" in line


def test_standalone_entry_points_print_the_same_one_line(tmp_path, capsys) -> None:
    from megapairs.evaluate.cli import main as evaluate_main
    from megapairs.search.cli import main as search_main
    from megapairs.train.cli import main as train_main

    assert search_main(["search", "--index", str(tmp_path / "nowhere"), "--text", "red"]) == 2
    assert one_line(capsys.readouterr().err, "megapairs-search")
    assert evaluate_main(["--benchmark", "cirr", "--split", "nope", "--data", str(tmp_path), "--model", "x:y"]) == 2
    assert "val, test1" in one_line(capsys.readouterr().err, "megapairs-evaluate")
    assert train_main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "batch_size=0"]) == 2
    assert "train.batch_size" in one_line(capsys.readouterr().err, "megapairs-train")


def one_line(err: str, prog: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]) and "Traceback" not in err, err
    return lines[0]


def test_run_overrides_name_their_section(tmp_path, capsys) -> None:
    assert main(["run", "--run", str(tmp_path / "r"), "--preset", "tiny", "k=3"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "names no section" in line and "mine.k=3" in line
    assert main(["run", "--run", str(tmp_path / "r"), "--preset", "tiny", "mine.k=abc"]) == 2
    assert "error: mine.k: expected an integer" in one_error_line(capsys.readouterr().err)  # not PipelineConfig.
    assert not (tmp_path / "r").exists()


def test_index_and_serve_options_fail_before_the_model_loads(tmp_path, monkeypatch, capsys) -> None:
    import socket

    import megapairs.search.cli as search_cli

    def no_model(*a, **k):
        raise AssertionError("the model must not load before the options are checked")

    monkeypatch.setattr(search_cli, "_retriever", no_model)
    gallery = make_image_folder(tmp_path / "g", n_per=1)
    assert main(["index", "--gallery", str(gallery), "--out", str(tmp_path / "i"), "--model", "x:y",
                 "--faiss", "bogus"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--faiss 'bogus'" in line and "HNSW32" in line
    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    assert main(["serve", "--index", str(tmp_path / "i"), "--port", "99999"]) == 2
    assert "--port 99999 is not a TCP port" in one_error_line(capsys.readouterr().err)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--index", str(tmp_path / "i"), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(capsys.readouterr().err)


def test_a_json_array_source_is_read_as_json(tmp_path, capsys) -> None:
    images = make_image_folder(tmp_path / "images", n_per=1)
    rows = [{"image": str(p.relative_to(tmp_path)), "caption": f"picture {i}"}
            for i, p in enumerate(sorted(images.rglob("*.png")))]
    source = tmp_path / "list.json"
    source.write_text(json.dumps(rows, indent=1))  # one object over several lines, as editors write it
    assert main(["ingest", "--run", str(tmp_path / "r"), "--preset", "tiny", f"ingest.source={source}"]) == 0
    assert '"ok": 12' in capsys.readouterr().out


def test_train_out_inside_an_artifact_is_refused(exported_run, capsys) -> None:
    run, _ = exported_run
    before = fingerprint(run / "dataset")
    for out in (run / "dataset", run / "dataset" / "ft", run / "corpus"):
        assert main(["train", "--data", str(run / "dataset"), "--model", "offline:default", "--out", str(out),
                     "max_steps=1"]) == 2
        assert "inside the megapairs artifact" in one_error_line(capsys.readouterr().err)
    assert fingerprint(run / "dataset") == before
    # A run folder is the data of train and of the triplets benchmark alike; batch_size names train.
    assert main(["train", "--data", str(run), "--model", "offline:default", "--out", str(run.parent / "ft"),
                 "batch_size=999"]) == 2
    assert "train.batch_size: 999 exceeds the" in one_error_line(capsys.readouterr().err)


def test_triplets_benchmark_takes_a_run_folder(exported_run) -> None:
    from megapairs.evaluate.triplets import load_rows

    run, _ = exported_run
    assert load_rows(run) == load_rows(run / "dataset") and load_rows(run)


def test_a_refused_config_change_says_what_changed(tmp_path, capsys) -> None:
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    assert main(["ingest", "--run", str(run), "--preset", "tiny", f"ingest.source={source}"]) == 0
    assert main(["ingest", "--run", str(run), "shard_size=5", "limit=40"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "ingest.shard_size: 16 -> 5" in line and "ingest.limit: 48 -> 40" in line and "--overwrite" in line


def test_a_damaged_manifest_is_named_and_the_hint_works(exported_run, capsys) -> None:
    run, _ = exported_run
    manifest = run / "pairs" / ".megapairs" / "manifest.json"
    manifest.write_text(manifest.read_text()[:20])  # cut short
    for argv in (["status", str(run)], ["annotate", "--run", str(run)]):
        assert main(argv) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"{manifest} is damaged" in line and f"megapairs mine --run {run}" in line
    manifest.unlink()
    assert main(["mine", "--run", str(run)]) == 0
    assert main(["run", "--run", str(run), "--no-report"]) == 0  # everything downstream still matches
    assert "dataset: " in capsys.readouterr().out


def test_a_run_folder_with_a_users_own_dataset_folder_is_not_taken_over(tmp_path, tiny_overrides, capsys) -> None:
    source = make_image_folder(tmp_path / "images", n_per=1)
    project = tmp_path / "project"
    (project / "dataset").mkdir(parents=True)
    (project / "dataset" / "labels.csv").write_text("mine")
    argv = ["run", "--run", str(project), "--preset", "tiny", "--no-report", f"ingest.source={source}",
            *tiny_overrides]
    assert main([*argv, "--overwrite"]) == 2
    assert "holds files megapairs did not write" in one_error_line(capsys.readouterr().err)
    assert [p.name for p in (project / "dataset").iterdir()] == ["labels.csv"]
    assert main([*argv, "--until", "annotate"]) == 0  # the stages before it are not affected


def test_status_and_inspect_point_at_the_right_folder(exported_run, capsys) -> None:
    run, _ = exported_run
    assert main(["status", str(run / "pairs")]) == 2
    assert f"megapairs status {run}" in one_error_line(capsys.readouterr().err)
    assert main(["inspect", str(run / "pairs" / "part-00000.parquet")]) == 2
    assert f"megapairs inspect {run / 'pairs'}" in one_error_line(capsys.readouterr().err)
    assert main(["inspect", str(run / "pairs"), "--columns", "query_id", "bogus"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no column 'bogus'" in line and "target_id" in line and "FieldRef" not in line


def test_overwrite_keeps_the_old_output_until_the_new_one_finishes_a_shard(exported_run, capsys) -> None:
    from megapairs.annotate.llamacpp import free_port

    run, _ = exported_run
    before = fingerprint(run / "annotations")
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert main(["annotate", "--run", str(run), "--overwrite", f"annotate.writer=openai-completions:{url}#m",
                 "annotate.retries=1", "annotate.backoff_s=0.01", "annotate.backoff_max_s=0.02"]) == 1
    assert url in one_error_line(capsys.readouterr().err)
    assert fingerprint(run / "annotations") == before  # the old annotations are back, byte for byte
    assert not (run / ".annotations.replaced").exists()
    assert main(["run", "--run", str(run), "--no-report"]) == 0  # and the run is whole
    # A successful --overwrite replaces the old output and leaves nothing aside.
    assert main(["annotate", "--run", str(run), "--overwrite", "annotate.shard_size=7"]) == 0
    assert fingerprint(run / "annotations") != before and not (run / ".annotations.replaced").exists()


def test_a_device_this_machine_lacks_is_an_input_error() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError) as ei:
        torch.device("gpu")
    assert describe(ei.value) == (2, "'gpu' is not a torch device; use cpu, cuda, cuda:N or mps")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Exception) as ei:
        torch.zeros(1, device="cuda")
    code, line = describe(ei.value)
    assert code == 2 and line.startswith("CUDA is not available here") and "device to cpu" in line
