"""Every model spec of a config is checked when a run starts (before any stage), so a typo in a late
stage's model does not wait for that stage; the error names the field and the valid prefixes."""

from __future__ import annotations

import pytest

from megapairs.cli import main
from megapairs.config import load_config
from tests.conftest import make_image_folder
from tests.core.test_cli_faults import one_error_line

BAD = [
    ("embed.image=bogus", ["embed.image:", "hf:", "offline:"]),
    ("embed.visual=clip:x", ["embed.visual: unknown image encoder spec 'clip:x'", "hf:, offline:"]),
    ("embed.caption=offline:efficientnet-lite0", ["embed.caption:", "offline:minilm"]),
    ("embed.image=hf:", ["embed.image:", "names no model"]),
    ("annotate.describer=nonsense:x", ["annotate.describer: unknown describer spec", "captions:", "openai:",
                                       "template:"]),
    ("annotate.describer=llamacpp:gemma3-270m", ["annotate.describer:", "use captions:llamacpp:gemma3-270m"]),
    ("annotate.describer=captions:nonsense:x", ["annotate.describer:", "openai-completions:"]),
    ("annotate.writer=openai:localhost:8000", ["annotate.writer:", "http(s) URL"]),
    ("annotate.writer=llamacpp:gemma3-207m", ["annotate.writer:", "llamacpp:gemma3-270m"]),
    ("annotate.writer_fallbacks=[nonsense:x]", ["annotate.writer_fallbacks[0]:", "template:"]),
    ("followup.model=bogus:x", ["followup.model:", "ckpt:", "clip:", "offline:"]),
    ("followup.model=offline:nope", ["followup.model:", "offline:default"]),
]


@pytest.mark.parametrize("override, words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_spec_of_any_stage_stops_the_run_before_the_first_stage(override, words, tmp_path, capsys):
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    # --until ingest: the bad spec belongs to a later stage, and is still refused at once
    code = main(["run", "--run", str(run), "--preset", "tiny", "--until", "ingest", f"ingest.source={source}",
                 override])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2, line
    for w in words:
        assert w in line, (w, line)
    assert not run.exists()  # nothing written, config.yaml included


def test_a_stage_command_checks_the_saved_configs_specs_too(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["ingest", "--run", str(run), "--preset", "tiny", "ingest.source=demo", "followup.model=mllm:"])
    assert code == 2 and "followup.model:" in one_error_line(capsys.readouterr().err)


def test_the_shipped_presets_pass_the_check_without_loading_a_model(monkeypatch):
    import megapairs.embed.backends.hf as hf
    import megapairs.embed.backends.offline as offline

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded to check a spec")

    monkeypatch.setattr(hf.HFImageEncoder, "__init__", no_loading)
    monkeypatch.setattr(offline, "shared_trunk", no_loading)
    monkeypatch.setattr(offline, "shared_minilm", no_loading)
    for preset in ("demo", "paper", "tiny"):
        load_config(preset).check_specs()
    load_config("tiny", overrides=["annotate.describer=captions:openai-completions:http://h:1/v1#m",
                                   "annotate.writer=openai:http://h:1/v1#m", "embed.image=hf:org/name"]).check_specs()


def test_a_llamacpp_model_file_in_the_working_folder_passes_whatever_its_name(tmp_path, monkeypatch):
    # resolve_model takes any existing file; the check must not refuse one it would load
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Gemma-3-270M.Q4_K_M.GGUF").write_bytes(b"GGUF")
    (tmp_path / "model.bin").write_bytes(b"GGUF")
    for name in ("Gemma-3-270M.Q4_K_M.GGUF", "model.bin"):
        load_config("tiny", overrides=[f"annotate.writer=llamacpp:{name}",
                                       f"annotate.describer=captions:llamacpp:{name}"]).check_specs()
    with pytest.raises(Exception, match="llamacpp:gemma3-270m"):  # a typo of the alias is still caught
        load_config("tiny", overrides=["annotate.writer=llamacpp:gemma3-207m"]).check_specs()


def test_registering_a_prefix_again_replaces_its_check_too():
    """A third party that registers its own factory under a taken prefix must not be judged by the
    check of the factory it replaced."""
    from megapairs.registry import Registry, SpecError, needs_argument

    reg: Registry[object] = Registry("widget")
    reg.register("w", check=needs_argument("w", "name"))(lambda arg: object())
    with pytest.raises(SpecError):
        reg.check("w:", "field")
    reg.register("w")(lambda arg: object())  # the new factory takes `w:` alone (a default)
    reg.check("w:", "field")
