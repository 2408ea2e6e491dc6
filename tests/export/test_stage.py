"""The export stage end to end on the fixture run: layout, contract, determinism, resume, formats."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from megapairs.artifacts import Artifact, ArtifactError
from megapairs.executors import LocalExecutor
from megapairs.export import ExportConfig, ExportStage, read_triplets, regenerate_card, validate_megapairs
from megapairs.export.cli import main as cli_main
from megapairs.stages import run_stage


def export(root: Path, out: Path, **cfg) -> dict:
    cfg.setdefault("val_fraction", 0.25)
    cfg.setdefault("shard_size", 3)
    return run_stage(ExportStage(root, ExportConfig(**cfg), output=out))


def rows_of(out: Path, split: str) -> list[dict]:
    return [r for p in sorted((out / split).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def tree_bytes(folder: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob(pattern))}


@pytest.fixture(scope="module")
def exported(run_root, tmp_path_factory):
    root, info = run_root
    out = tmp_path_factory.mktemp("ds") / "dataset"
    manifest = export(root, out, formats=["parquet", "jsonl", "webdataset"])
    return root, info, out, manifest


def test_layout_counts_and_contract(exported):
    root, info, out, m = exported
    assert m["kind"] == "dataset" and m["rows"] == 10
    assert m["splits"]["train"] + m["splits"]["validation"] == 10 and m["splits"]["validation"] > 0
    assert m["dropped"] == {"annotation_failed": 1, "no_annotation": 1, "too_few_instructions": 1}
    assert m["annotation_status"] == {"ok": 11, "refused": 1}
    assert m["notes"]["negative_unusable"] == 3
    assert m["upstream_info"]["pairs"]["views"]["image"].startswith("offline:")
    assert validate_megapairs(out) == []
    train, val = rows_of(out, "train"), rows_of(out, "validation")
    for r in train + val:
        assert r["hns"][0] == r["q_img"] and not Path(r["q_img"]).is_absolute()
        assert r["q_img"] == f"images/{r['q_id'][:2]}/{r['q_id']}.jpg"
        assert info["bad"] not in r["hn_ids"] and r["t_id"] not in r["hn_ids"]
        assert len(r["q_text"]) >= 1 and all(t.strip() for t in r["q_text"])
    # every referenced image written once, nothing else
    files = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.jpg"))
    referenced = sorted({p for r in train + val for p in (r["q_img"], r["t_img"], *r["hns"])})
    assert files == referenced and m["images"] == len(files)
    # no image id, in any role, on both sides
    ids = [{i for r in rows for i in (r["q_id"], r["t_id"], *r["hn_ids"])} for rows in (train, val)]
    assert not (ids[0] & ids[1])


def test_formats_agree_and_webdataset_samples(exported):
    _, _, out, _ = exported
    for split in ("train", "validation"):
        pq_rows = rows_of(out, split)
        js_rows = [json.loads(line) for p in sorted((out / "jsonl" / split).glob("*.jsonl")) for line in p.open()]
        assert [r["key"] for r in pq_rows] == [r["key"] for r in js_rows]
        assert pq_rows[0]["q_text"] == js_rows[0]["q_text"]
        names = [n for p in sorted((out / "webdataset" / split).glob("*.tar")) for n in tarfile.open(p).getnames()]
        assert sum(n.endswith(".json") for n in names) == len(pq_rows)
        first = pq_rows[0]
        assert {f"{first['key']}.q.jpg", f"{first['key']}.t.jpg", f"{first['key']}.hn1.jpg"} <= set(names)

    import webdataset as wds

    url = str(sorted((out / "webdataset" / "train").glob("*.tar"))[0])
    sample = next(iter(wds.WebDataset(url, shardshuffle=False)))
    meta = json.loads(sample["json"])
    assert sample["q.jpg"] == (out / meta["q_img"]).read_bytes()
    assert sample["t.jpg"] == (out / meta["t_img"]).read_bytes()
    # the reader takes a tar shard directly and resolves its relative paths against the dataset
    from_tar = list(read_triplets(url))
    assert from_tar[0]["q_img"] == str((out / meta["q_img"]).resolve())
    assert len(from_tar) == len(rows_of(out, "train")[:3])


def test_card_and_preview(exported):
    _, _, out, m = exported
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "path: train/*.parquet" in card
    for needle in ("Dropped pairs", "no_annotation", "refused", "the model refused to describe",
                   "offline:efficientnet-lite0", "captions:llamacpp:gemma3-270m", "`template:`",
                   "prompt version", "Train/validation split", "Samples"):
        assert needle in card, needle
    for src in re.findall(r'src="([^"]+)"', card):
        assert (out / src).is_file(), src
    if (out / "assets").exists():
        assert "assets/similarity.png" in card and (out / "assets/similarity.png").is_file()
    page = (out / "preview.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs and all(not s.startswith("/") and (out / s).is_file() for s in srcs)
    assert "make it like picture" in page and page.count('class="t"') == m["rows"]
    assert regenerate_card(out).read_text() == card


def test_deterministic_and_seed_sensitive(run_root, exported, tmp_path):
    root, _, out, _ = exported
    again = tmp_path / "again"
    export(root, again, formats=["parquet", "jsonl", "webdataset"])
    for pattern in ("*/*.jsonl", "*/*.tar", "images/*/*"):
        assert tree_bytes(again, pattern) == tree_bytes(out, pattern), pattern
    assert [r["key"] for r in rows_of(again, "train")] == [r["key"] for r in rows_of(out, "train")]


def test_resume_after_a_crash_gives_the_same_dataset(run_root, exported, tmp_path):
    root, _, out, _ = exported
    target = tmp_path / "resumed"

    class CrashAfterOne(LocalExecutor):
        def run(self, stage, tasks):
            worker = stage.make_worker()
            worker(tasks[0])
            raise RuntimeError("simulated crash")

    cfg = ExportConfig(val_fraction=0.25, shard_size=3, formats=["parquet", "jsonl", "webdataset"])
    with pytest.raises(RuntimeError, match="simulated"):
        run_stage(ExportStage(root, cfg, output=target), CrashAfterOne())
    assert not Artifact(target).is_complete() and Artifact(target).is_done(0)
    m = run_stage(ExportStage(root, cfg, output=target))
    assert m["rows"] == 10
    for pattern in ("*/*.jsonl", "*/*.tar", "images/*/*"):
        assert tree_bytes(target, pattern) == tree_bytes(out, pattern), pattern
    # a different configuration refuses to mix into the same folder
    with pytest.raises(ArtifactError, match="different configuration"):
        run_stage(ExportStage(root, ExportConfig(seed=7), output=target))


def test_resize_pad_png_and_filters(run_root, tmp_path):
    root, _ = run_root
    out = tmp_path / "small"
    m = export(root, out, image_size=32, resize="pad", image_format="png", formats=["jsonl"],
               exclude_writers=["template:"], num_hard_negatives=2, val_fraction=0.0)
    assert m["splits"] == {"train": 9, "validation": 0} and m["dropped"]["writer_excluded"] == 1
    assert validate_megapairs(out) == []
    assert not list(out.glob("train/*.parquet")) and not (out / "validation").exists()
    for p in (out / "images").rglob("*.png"):
        im = Image.open(p)
        assert im.size == (32, 32) and im.format == "PNG"
    rows = list(read_triplets(out))
    assert len(rows) == 9 and all(len(r["hns"]) <= 2 for r in rows)
    wide = next(r for r in rows if Image.open(r["q_img"]).getpixel((0, 0)) == (255, 255, 255))
    assert wide  # padding is white for non-square sources


def test_cli_runs_export_and_validates(run_root, tmp_path, capsys):
    root, _ = run_root
    out = tmp_path / "cli"
    code = cli_main(["--run", str(root), "--out", str(out), "val_fraction=0.25", "export.image_size=24"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["triplets"] == 10 and Path(summary["dataset"]) == out
    assert cli_main(["--run", str(root), "--out", str(out), "bogus=1"]) == 2


def test_nothing_to_export_still_finishes_with_a_card(run_root, tmp_path):
    root, _ = run_root
    out = tmp_path / "empty"
    m = export(root, out, min_instructions=50)
    assert m["rows"] == 0 and m["num_shards"] == 0 and m["dropped"]["too_few_instructions"] == 11
    card = (out / "README.md").read_text()
    assert "configs:" not in card and "0 triplets" in card
    assert "no triplets found" in validate_megapairs(out)
