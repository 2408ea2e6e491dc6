"""At run start the OpenAI-compatible servers of the annotate section are asked for their models
(GET /v1/models): a server that is down, or a model it does not serve, stops the run before the first
stage, with the URL and the served models in the one error line."""

from __future__ import annotations

import pytest

from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llamacpp import free_port
from megapairs.annotate.probe import probe_servers
from megapairs.cli import main
from megapairs.errors import describe
from tests.conftest import make_image_folder
from tests.core.test_cli_faults import one_error_line


def _config(url: str, describer_model: str = "m", writer_model: str = "vlm") -> AnnotateConfig:
    return AnnotateConfig.from_dict({"describer": f"captions:openai-completions:{url}#{describer_model}",
                                     "writer": f"openai:{url}#{writer_model}"}, "annotate")


def test_a_server_that_serves_the_models_passes(server) -> None:
    probe_servers(_config(server.url))
    assert server.requests() == []  # no generation request was made


def test_a_model_the_server_does_not_serve_is_named_with_the_served_ones(server) -> None:
    with pytest.raises(Exception) as e:
        probe_servers(_config(server.url, writer_model="llama-3-8b"))
    code, line = describe(e.value)
    assert code == 2
    for words in ("annotate.writer:", server.url, "'llama-3-8b'", "m, base, vlm, instruct", "probe_servers=false"):
        assert words in line, line


def test_a_server_without_a_model_list_is_let_through(server) -> None:
    server.control(models=None)  # GET /v1/models answers 404
    try:
        probe_servers(_config(server.url, writer_model="anything"))
    finally:
        server.control(models=["m", "base", "vlm", "instruct"])


def test_an_unreachable_server_is_a_run_failure_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(Exception) as e:
        probe_servers(_config(url))
    code, line = describe(e.value)
    assert code == 1 and "annotate.describer:" in line and url in line and "ConnectError" in line
    assert "rerun the same command to resume" in line


def test_the_run_stops_before_its_first_stage_and_the_probe_can_be_skipped(server_factory, tmp_path,
                                                                           tiny_overrides, capsys) -> None:
    server = server_factory()
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    args = ["run", "--run", str(run), "--preset", "tiny", "--until", "annotate", f"ingest.source={source}",
            *tiny_overrides, f"annotate.writer=openai-completions:{server.url}#no-such-model",
            "annotate.writer_mode=list"]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "annotate.writer:" in line and "'no-such-model'" in line and server.url in line
    assert not run.exists()  # not one stage ran

    assert main([*args, "annotate.probe_servers=false"]) == 0  # this server answers for any model name
    assert server.requests()
    server.stop()
    capsys.readouterr()
    # annotations complete: the probe is not needed (nor made) to rerun the finished run
    assert main([*args, "annotate.probe_servers=true"]) == 0, capsys.readouterr().err


def test_overwrite_probes_only_when_annotate_will_run(server_factory, tmp_path, tiny_overrides, capsys) -> None:
    """--overwrite of a finished run whose annotate output stays (same config, same inputs) sends no
    request, so it must not need the server; a change upstream of annotate does."""
    server = server_factory()
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    args = ["run", "--run", str(run), "--preset", "tiny", "--until", "annotate", f"ingest.source={source}",
            *tiny_overrides, f"annotate.writer=openai-completions:{server.url}#m", "annotate.writer_mode=list"]
    assert main(args) == 0, capsys.readouterr().err
    server.stop()
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err  # annotate is reused: no probe
    assert main([*args, "mine.k=3", "--overwrite"]) == 1  # pairs change, so annotate runs: the server is needed
    line = one_error_line(capsys.readouterr().err)
    assert "annotate.writer:" in line and server.url in line, line


def _answer_models(monkeypatch, body: dict) -> None:
    import httpx

    import megapairs.annotate.probe as probe

    monkeypatch.setattr(probe.httpx, "get", lambda url, **kw: httpx.Response(200, json=body))


def test_a_single_model_llamacpp_server_is_not_held_to_a_model_name(monkeypatch) -> None:
    # what llama.cpp's own server lists (checked against xllamacpp): the file it loaded, owned by
    # "llamacpp"; it answers a request for any model name with that one model
    _answer_models(monkeypatch, {"object": "list", "data": [
        {"id": "/models/gemma-3-270m-q4_k_m.gguf", "object": "model", "owned_by": "llamacpp"}]})
    probe_servers(_config("http://127.0.0.1:8080/v1", "gemma", "gemma"))


def test_an_ollama_name_without_a_tag_matches_its_latest_tag(monkeypatch) -> None:
    # Ollama lists `name:tag` and answers `name` with `name:latest`
    _answer_models(monkeypatch, {"object": "list", "data": [
        {"id": "llama3.2:latest", "object": "model", "owned_by": "library"},
        {"id": "qwen2.5vl:7b", "object": "model", "owned_by": "library"}]})
    probe_servers(_config("http://127.0.0.1:11434/v1", "llama3.2", "qwen2.5vl:7b"))
    with pytest.raises(Exception) as e:  # a tag it does not list is still caught
        probe_servers(_config("http://127.0.0.1:11434/v1", "llama3.2", "qwen2.5vl"))
    assert "'qwen2.5vl'" in describe(e.value)[1]


def test_a_loopback_server_is_not_probed_from_the_driver_of_a_ray_cluster(monkeypatch) -> None:
    """With executor ray:ADDRESS the annotate actors run on the cluster's nodes, where 127.0.0.1 is
    their own machine: the driver cannot tell whether that server is up, so it must not refuse it."""
    import httpx

    import megapairs.annotate.probe as probe

    asked: list[str] = []

    def down(url: str, **kw):
        asked.append(url)
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(probe.httpx, "get", down)
    probe_servers(_config("http://127.0.0.1:8000/v1"), remote=True)
    probe_servers(_config("http://localhost:8000/v1"), remote=True)
    assert asked == []
    with pytest.raises(Exception):  # a named host is the same host for every node: still checked
        probe_servers(_config("http://gpu-box:8000/v1"), remote=True)
    with pytest.raises(Exception):  # on this machine (local, or a local Ray) 127.0.0.1 is checked
        probe_servers(_config("http://127.0.0.1:8000/v1"))


def test_the_pipeline_tells_the_probe_when_annotate_runs_on_a_ray_cluster(monkeypatch, tmp_path) -> None:
    import megapairs.annotate.probe as probe
    from megapairs.config import load_config
    from megapairs.pipeline import run_pipeline

    class Probed(Exception):
        pass

    def record(config, where="annotate", **kw):
        raise Probed(kw)

    monkeypatch.setattr(probe, "probe_servers", record)
    for executor, remote in (("local", False), ("ray", False), ("ray:10.0.0.1:6379", True)):
        config = load_config("tiny", overrides=[f"executor={executor}",
                                                "annotate.writer=openai:http://127.0.0.1:1/v1#m"])
        with pytest.raises(Probed) as e:  # stops before any stage (and before Ray starts)
            run_pipeline(tmp_path / "run", config)
        assert e.value.args[0] == {"remote": remote}
