"""The CLI under faults: one line naming the cause and the next step, exit code 2 for input errors and
1 for runtime failures, nothing lost; --debug shows the traceback; --json keeps stdout clean."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from megapairs.annotate.llamacpp import free_port
from megapairs.cli import main
from megapairs.errors import describe
from tests.annotate.conftest import FakeServer
from tests.conftest import make_image_folder


def one_error_line(err: str) -> str:
    """The stderr of a failed command (logs and progress aside) ends in one `megapairs: error:` line."""
    lines = [ln for ln in err.splitlines() if ln.startswith("megapairs: error: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    assert "Traceback" not in err and "\n  File " not in err
    return lines[0]


@pytest.fixture
def mined_run(tmp_path, tiny_overrides, capsys) -> tuple[Path, list[str]]:
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    args = ["run", "--run", str(run), "--preset", "tiny", "--no-report", f"ingest.source={source}", *tiny_overrides]
    assert main([*args, "--until", "mine"]) == 0
    capsys.readouterr()
    return run, args


def _llm(url: str) -> list[str]:
    return [f"annotate.describer=captions:openai-completions:{url}#m", f"annotate.writer=openai-completions:{url}#m",
            "annotate.writer_mode=list", "annotate.retries=1", "annotate.backoff_s=0.01", "annotate.backoff_max_s=0.02"]


def test_refusing_server_is_one_line_exit_1_and_resumable(mined_run, capsys) -> None:
    run, args = mined_run
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert main([*args, *_llm(url), "--until", "annotate"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "ConnectError" in line and url in line and "rerun the same command to resume" in line
    assert (run / "pairs" / "part-00000.parquet").exists()  # nothing already done is lost


def test_killed_server_is_one_line_exit_1(mined_run, tmp_path, capsys) -> None:
    run, args = mined_run
    server = FakeServer(tmp_path / "requests.jsonl", die_after=2).start()
    try:
        assert main([*args, *_llm(server.url), "--until", "annotate"]) == 1
    finally:
        server.stop()
    line = one_error_line(capsys.readouterr().err)
    assert server.url in line and "check that the server is up" in line


def test_debug_shows_the_traceback(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mine:\n  k: [1,\n")
    assert main(["run", "--run", str(tmp_path / "r"), "--config", str(bad), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("megapairs: error:")


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mine:\n  k: 3\n  bands: {image: [0.1, 0.9]\n")
    assert main(["run", "--run", str(tmp_path / "r"), "--config", str(bad)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(bad) in line and "line 4" in line and "invalid YAML" in line
    assert not (tmp_path / "r").exists()  # nothing written for a refused config
    assert main(["run", "--run", str(tmp_path / "r"), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in one_error_line(capsys.readouterr().err)


def test_corrupt_tar_source(tmp_path, capsys) -> None:
    good = tmp_path / "good.tar"
    member = tmp_path / "a.txt"
    member.write_text("a caption " * 400)
    with tarfile.open(good, "w") as tar:
        tar.add(member, arcname="a.txt")
    broken = tmp_path / "broken.tar"
    broken.write_bytes(good.read_bytes()[:700])  # cut inside the first member
    for src in (broken, tmp_path / "noise.tar"):
        if not src.exists():
            src.write_bytes(bytes(range(256)) * 8)
        assert main(["ingest", "--run", str(tmp_path / src.stem), "--preset", "tiny", f"ingest.source={src}"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(src) in line and "not a readable tar archive" in line


def test_empty_and_all_bad_corpora_stop_with_a_clear_line(tmp_path, tiny_overrides, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        (bad / f"x{i}.png").write_bytes(b"" if i % 2 else b"not a png at all")
        (bad / f"x{i}.txt").write_text("a caption")
    for src in (empty, bad):
        run = tmp_path / f"run-{src.name}"
        assert main(["run", "--run", str(run), "--preset", "tiny", f"ingest.source={src}", *tiny_overrides]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "0 usable image(s)" in line and "ingest.source" in line and "AssertionError" not in line
        assert (run / "corpus" / ".megapairs" / "manifest.json").exists()  # the ingest result is kept
    assert "2 empty_file, 2 not_an_image" in line  # the all-bad corpus says why items were rejected


def test_refused_config_leaves_config_yaml(tmp_path, tiny_overrides, capsys) -> None:
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    assert main(["run", "--run", str(run), "--preset", "tiny", "--until", "ingest", f"ingest.source={source}"]) == 0
    saved = (run / "config.yaml").read_bytes()
    assert main(["run", "--run", str(run), "--preset", "tiny", "--until", "ingest", f"ingest.source={source}",
                 "ingest.shard_size=5"]) == 2
    assert "different configuration" in one_error_line(capsys.readouterr().err)
    assert (run / "config.yaml").read_bytes() == saved
    assert main(["run", "--run", str(run), "--until", "ingest"]) == 0  # a plain rerun still works
    # The refusal also comes before a later stage writes anything.
    assert main(["run", "--run", str(run), "--until", "embed", *tiny_overrides]) == 0
    saved = (run / "config.yaml").read_bytes()
    assert main(["run", "--run", str(run), "--until", "embed", *tiny_overrides, "embed.batch_size=3",
                 f"embed.image=hf:{tiny_overrides[1].split(':', 1)[1]}"]) == 2
    assert (run / "config.yaml").read_bytes() == saved


def test_status_and_inspect_of_missing_paths_exit_2(tmp_path, capsys) -> None:
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in one_error_line(capsys.readouterr().err)
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    one_error_line(capsys.readouterr().err)
    (tmp_path / "plain").mkdir()
    assert main(["inspect", str(tmp_path / "plain")]) == 2
    assert "not an artifact folder" in one_error_line(capsys.readouterr().err)


def test_json_output_is_only_json(mined_run, capsys, monkeypatch) -> None:
    run, _ = mined_run
    for argv in (["status", str(run), "--json"], ["inspect", str(run / "pairs"), "-n", "2", "--json"],
                 ["report", str(run), "--json"]):
        assert main(argv) == 0
        json.loads(capsys.readouterr().out)
    import megapairs.status as status

    real = status.run_status_data

    def chatty(root):
        print("Loaded pretrained weights for something")  # a library printing on stdout
        return real(root)

    monkeypatch.setattr(status, "run_status_data", chatty)
    assert main(["status", str(run), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["artifacts"]["pairs"]["state"] == "complete" and "Loaded pretrained" in err
    assert main(["status", str(run / "nope"), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2


def test_efficientnet_prints_nothing_on_stdout(capfd) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    from megapairs.embed.backends.offline import EfficientNetTrunk

    EfficientNetTrunk()
    assert capfd.readouterr().out == ""


def test_version_and_help(capsys) -> None:
    from megapairs import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"megapairs {__version__}"
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "--out" in out and "--no-validate" in out and "--json" in out


def test_ray_task_errors_are_unwrapped() -> None:
    exceptions = pytest.importorskip("ray.exceptions")
    cause = FileNotFoundError(2, "No such file or directory", "/data/exclude.txt")
    wrapped = exceptions.RayTaskError("ShardActor.run", "Traceback (most recent call last):\n ...", cause)
    assert describe(wrapped) == describe(cause)
    assert describe(wrapped.as_instanceof_cause()) == describe(cause)
    assert describe(wrapped)[0] == 2 and "/data/exclude.txt" in describe(wrapped)[1]


@pytest.mark.ray
def test_error_in_a_ray_worker_is_the_same_line(tmp_path, capsys) -> None:
    pytest.importorskip("ray")
    source = make_image_folder(tmp_path / "images", n_per=1)
    missing = tmp_path / "no-such-exclusions.txt"
    lines = []
    for executor in ("local", "ray"):
        assert main(["ingest", "--run", str(tmp_path / executor), "--preset", "tiny", f"ingest.source={source}",
                     f"ingest.exclude=[{missing}]", "--executor", executor]) == 2
        lines.append(one_error_line(capsys.readouterr().err))
    import ray

    ray.shutdown()
    assert lines[0] == lines[1] and str(missing) in lines[0]


def test_not_an_image_is_an_input_error(tmp_path) -> None:
    from PIL import Image

    fake = tmp_path / "q.jpg"
    fake.write_text("not an image")
    with pytest.raises(Exception) as ei:
        Image.open(fake)
    code, line = describe(ei.value)
    assert code == 2 and str(fake) in line and "\n" not in line
