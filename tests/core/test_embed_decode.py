"""Embed decoding: uint8 geometry + on-device normalisation, thread vs process pools, JPEG draft,
and the config hash of runs saved before these fields existed."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from megapairs.artifacts import Artifact
from megapairs.cli import main
from megapairs.corpus.config import IngestConfig
from megapairs.corpus.images import decode, load_image
from megapairs.corpus.stage import IngestStage
from megapairs.embed.backends.offline import EFFNET_PREPROCESS
from megapairs.embed.backends.preprocess import Preprocess
from megapairs.embed.config import EmbedConfig
from megapairs.embed.stage import EmbedStage, Encoders, ok_rows
from megapairs.embed.store import vector_path
from megapairs.stages import run_stage
from tests.conftest import make_image_folder
from tests.core.helpers import run_fingerprint, start_run_until_shards
from tests.core.test_resume_and_executors import _cli

CLIP_PRE = Preprocess((224, 224), 224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
SIGLIP_PRE = Preprocess((64, 48), None, (0.5,) * 3, (0.5,) * 3, resample=2, rescale=1.0)


def _photos(folder: Path, n: int, size: tuple[int, int] = (200, 150)) -> Path:
    """n JPEG photos (random gradients + noise) with caption sidecars."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        base = np.linspace(0, 255, w)[None, :, None] * rng.random(3) + rng.integers(0, 60, (h, w, 3))
        Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg", quality=90)
        (folder / f"{i:03d}.txt").write_text(f"photo number {i}")
    return folder


def _tiny_cfg(clip: Path, dino: Path, **kw) -> EmbedConfig:
    return EmbedConfig(image=f"hf:{clip}", visual=f"hf:{dino}", caption=f"hf:{clip}", device="cpu",
                       batch_size=3, **kw)


def _vectors(root: Path, name: str, views) -> dict[str, bytes]:
    art = Artifact(root / name)
    return {v: b"".join(np.load(vector_path(art.path, v, i)).tobytes() for i in sorted(art.done_shards()))
            for v in views}


@pytest.mark.parametrize("pre", [EFFNET_PREPROCESS, CLIP_PRE, SIGLIP_PRE], ids=["effnet", "clip", "siglip"])
def test_uint8_geometry_then_device_normalise_is_bit_identical_to_the_float_path(pre):
    rng = np.random.default_rng(0)
    # landscape, portrait, smaller than the crop, odd sizes
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in [(300, 400), (517, 203), (100, 90), (224, 224)]]
    reference = torch.from_numpy(np.stack([pre(im) for im in images]))
    u8 = np.stack([pre.geometry(im) for im in images])
    assert u8.dtype == np.uint8 and u8.shape[1:] == (*pre.crop, 3)
    assert torch.equal(pre.normalize(torch.from_numpy(u8)), reference)


@pytest.fixture(scope="module")
def photo_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photo-run")
    source = _photos(root / "photos", 10)
    run_stage(IngestStage(root, IngestConfig(source=str(source), shard_size=4)))
    return root


def test_threads_and_processes_write_the_vectors_of_the_float_reference(photo_corpus, tiny_clip_dir, tiny_dino_dir):
    root = photo_corpus
    views = ("image", "visual", "caption")
    out = {}
    for mode in ("threads", "processes"):
        cfg = _tiny_cfg(tiny_clip_dir, tiny_dino_dir, decode_mode=mode, decode_workers=2)
        run_stage(EmbedStage(root, cfg, output=root / f"emb-{mode}"))
        out[mode] = _vectors(root, f"emb-{mode}", views)
    assert out["threads"] == out["processes"]

    # The path before uint8 decoding: float32 preprocess per image in NumPy, one batch per view.
    enc = Encoders(_tiny_cfg(tiny_clip_dir, tiny_dino_dir))
    corpus = Artifact(root / "corpus")
    ref = {v: [] for v in views}
    for shard in sorted(corpus.done_shards()):
        rows = ok_rows(corpus, shard, ["uri", "caption", "image_bytes"]).to_pylist()
        for i in range(0, len(rows), 3):
            images = [load_image(r) for r in rows[i : i + 3]]
            for v in ("image", "visual"):
                e = enc.image[v]
                x = torch.from_numpy(np.stack([e.preprocess(im) for im in images]))
                ref[v].append(e.encode(x).numpy().astype(np.float16))
            ref["caption"].append(enc.text["caption"].encode_text([r["caption"] for r in rows[i : i + 3]])
                                  .numpy().astype(np.float16))
    assert out["threads"] == {v: np.concatenate(ref[v]).tobytes() for v in views}


def test_draft_decodes_jpegs_smaller_but_never_below_the_target(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(buf, "JPEG")
    full, drafted = decode(buf.getvalue()), decode(buf.getvalue(), draft=100)
    assert (full.width, full.height) == (640, 480)
    assert (drafted.width, drafted.height) == (160, 120)  # 1/4 scale: 1/8 would be 60 high
    png = io.BytesIO()
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(png, "PNG")
    assert decode(png.getvalue(), draft=100).image.size == (640, 480)  # not a JPEG: untouched


def test_draft_changes_vectors_and_hash_while_mode_and_workers_do_not(photo_corpus, tiny_clip_dir, tiny_dino_dir):
    base = _tiny_cfg(tiny_clip_dir, tiny_dino_dir)
    assert base.config_hash() == _tiny_cfg(tiny_clip_dir, tiny_dino_dir, decode_mode="processes",
                                           decode_workers=5, decode_threads=2).config_hash()
    drafted = _tiny_cfg(tiny_clip_dir, tiny_dino_dir, decode_draft=True)
    assert drafted.config_hash() != base.config_hash()
    root = photo_corpus
    run_stage(EmbedStage(root, base, output=root / "emb-full"))
    run_stage(EmbedStage(root, drafted, output=root / "emb-draft"))
    # 200x150 photos, 32-pixel inputs: decoded at 1/4 scale, so the pixels (and vectors) differ
    assert _vectors(root, "emb-full", ["image"]) != _vectors(root, "emb-draft", ["image"])
    assert _vectors(root, "emb-full", ["caption"]) == _vectors(root, "emb-draft", ["caption"])


def test_configs_saved_before_the_decode_fields_keep_their_hash():
    # Hashes computed with the code before decode_mode / decode_workers / decode_draft existed.
    assert EmbedConfig().config_hash(("corpus", "abc")) == "60ea5652728a4393"
    old = {"image": "hf:/x", "visual": "", "caption": "hf:/x", "dtype": "float32", "decode_threads": 3,
           "batch_size": 7, "device": "auto"}
    cfg = EmbedConfig.from_dict(old, "embed")
    assert cfg.decode_draft is False and cfg.config_hash(("corpus", "abc")) == "4ec69217d5e051e6"


def test_a_run_whose_config_yaml_lacks_the_decode_fields_resumes_unchanged(tmp_path, tiny_overrides):
    source = make_image_folder(tmp_path / "images", n_per=1)
    run = tmp_path / "run"
    # Made as every run before these fields was: full decode (whatever the default is now).
    assert main(_cli(run, source, tiny_overrides + ["embed.decode_draft=false"])) == 0
    before = run_fingerprint(run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for name in ("decode_mode", "decode_workers", "decode_draft"):  # as written before they existed
        saved["embed"].pop(name)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    emb = Artifact(run / "embeddings")
    emb.manifest_path.unlink()  # an unfinished run: the last shard is embedded again on resume
    emb.marker_path(emb.done_shards()[-1]).unlink()
    assert main(["run", "--run", str(run), "--until", "mine", "--no-report"]) == 0  # the saved config
    assert run_fingerprint(run) == before


FROM_STDIN = """
import sys
import numpy as np
from PIL import Image
from megapairs.embed.config import EmbedConfig
from megapairs.embed.decode import Decoder, Geometry, decode_rows
path = sys.argv[1]
Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
geoms = {"a": Geometry((32, 32), 32)}
rows = [{"uri": path, "image_bytes": None}] * 3
d = Decoder(EmbedConfig(decode_mode="processes", decode_workers=2, batch_size=2), geoms)
got = np.concatenate([b["a"] for _, b in d.batches(rows)])
print(d.mode, np.array_equal(got, np.stack([r["a"] for r in decode_rows(rows, geoms)])))
"""


def test_a_process_pool_that_cannot_start_falls_back_to_threads(tmp_path):
    # A script read from stdin: spawned children cannot re-import the main module.
    repo = Path(__file__).parents[2]
    env = dict(os.environ, PYTHONPATH=f"{repo / 'src'}{os.pathsep}{repo}")
    out = subprocess.run([sys.executable, "-", str(tmp_path / "x.jpg")], input=FROM_STDIN, text=True,
                         capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["threads", "True"]
    assert "decoding on 2 threads instead" in out.stderr


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_with_decode_processes_resumes_identically_and_leaves_no_decoder(tmp_path, tiny_overrides):
    source = make_image_folder(tmp_path / "images", n_per=2)  # 24 images -> 6 shards per stage
    clean = tmp_path / "clean"
    assert main(_cli(clean, source, tiny_overrides)) == 0  # threads (auto on CPU)

    crashed = tmp_path / "crashed"
    procs = tiny_overrides + ["embed.decode_mode=processes", "embed.decode_workers=2"]
    embed_dir = crashed / "embeddings"
    proc = start_run_until_shards(_cli(crashed, source, procs), embed_dir)
    decoders = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(decoders) >= 2, "the decode processes were running"
    assert 2 <= len(Artifact(embed_dir).done_shards()) < 6, "the kill must land mid-stage"
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in decoders):
        time.sleep(0.1)
    assert not any(_alive(p) for p in decoders), "decode workers outlived their killed parent"

    assert main(_cli(crashed, source, procs)) == 0  # resume, still with processes
    assert run_fingerprint(crashed) == run_fingerprint(clean)
