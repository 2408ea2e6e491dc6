"""Ingest: every source kind, and a corpus salted with bad files where each is accounted for."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from megapairs.artifacts import open_complete
from megapairs.corpus.config import IngestConfig
from megapairs.corpus.stage import IngestStage, content_id
from megapairs.stages import run_stage
from tests.conftest import draw_shape

SVG = b"""<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns:cc="http://creativecommons.org/ns#" width="40" height="40">
<metadata><rdf:RDF><cc:Work><dc:title>Red Apple 01</dc:title><dc:subject><rdf:Bag>
<rdf:li>fruit</rdf:li><rdf:li>hash</rdf:li><rdf:li>apple</rdf:li></rdf:Bag></dc:subject></cc:Work></rdf:RDF></metadata>
<circle cx="20" cy="20" r="15" fill="red"/></svg>"""


def _ingest(tmp_path, **cfg):
    run_stage(IngestStage(tmp_path / "run", IngestConfig(**cfg)))
    rows = open_complete(tmp_path / "run" / "corpus").read_all().to_pylist()
    return {r["source"]: r for r in rows}, open_complete(tmp_path / "run" / "corpus").manifest()


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_salted_corpus_accounts_for_every_file(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    good = draw_shape("circle", "red")
    good.save(d / "good.png")
    (d / "good.txt").write_text("a red circle\n")
    good.save(d / "good_copy.png")  # exact duplicate of good.png
    draw_shape("square", "blue").save(d / "meta.jpg")
    (d / "meta.json").write_text(json.dumps({"caption": "a blue square", "width": 64}))
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.jpg").write_bytes(b"this is not an image at all")
    full = io.BytesIO()
    draw_shape("triangle", "green", size=200, seed=3).save(full, "JPEG", quality=95)
    (d / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    Image.new("1", (3000, 3000)).save(d / "bomb.png")  # 9 MP, above the limit set below
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(d / "deep16.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(d / "alpha.png")
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue", "green")]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    (d / "drawing.svg").write_bytes(SVG)
    (d / "broken.svg").write_bytes(b"<svg><not closed")
    (d / "excluded.png").write_bytes(_png(draw_shape("circle", "yellow")))
    excl = tmp_path / "exclude.txt"
    excl.write_text("excluded.png\n")

    rows, manifest = _ingest(tmp_path, source=str(d), shard_size=4, max_pixels=5_000_000, exclude=[str(excl)])
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {
        "alpha.png": "ok", "anim.gif": "ok", "bomb.png": "decompression_bomb", "broken.svg": "bad_svg",
        "cmyk.jpg": "ok", "good_copy.png": "duplicate", "deep16.png": "ok", "drawing.svg": "ok",
        "excluded.png": "excluded", "good.png": "ok", "meta.jpg": "ok", "text.jpg": "not_an_image",
        "truncated.jpg": "truncated", "zero.jpg": "empty_file",
    }
    assert all(r["reason"] for r in rows.values() if r["status"] != "ok")
    assert "same bytes as good.png" in rows["good_copy.png"]["reason"]
    assert "animated" in rows["anim.gif"]["note"] and "alpha" in rows["alpha.png"]["note"]
    assert "CMYK" in rows["cmyk.jpg"]["note"] and "8-bit" in rows["deep16.png"]["note"]
    assert rows["good.png"]["caption"] == "a red circle"
    assert rows["meta.jpg"]["caption"] == "a blue square"
    assert rows["drawing.svg"]["caption"] == "Red Apple: fruit, apple"  # number and junk keyword dropped
    assert rows["drawing.svg"]["image_bytes"].startswith(b"\x89PNG")
    assert rows["good.png"]["id"] == content_id((d / "good.png").read_bytes())
    assert manifest["status_counts"]["ok"] == 7 and sum(manifest["status_counts"].values()) == 14


def test_parquet_with_bytes_jsonl_with_paths_and_webdataset(tmp_path):
    imgs = [draw_shape(s, c) for s, c in [("circle", "red"), ("square", "blue"), ("triangle", "green")]]
    table = pa.table({"image": [_png(i) for i in imgs] + [None], "caption": ["red", "blue", "green", "none"]})
    pq.write_table(table, tmp_path / "t.parquet")
    rows, _ = _ingest(tmp_path, source=str(tmp_path / "t.parquet"))
    assert [r["status"] for r in rows.values()] == ["ok", "ok", "ok", "unreadable"]
    assert [r["caption"] for r in rows.values()][:3] == ["red", "blue", "green"]

    (tmp_path / "imgs").mkdir()
    for i, im in enumerate(imgs):
        im.save(tmp_path / "imgs" / f"{i}.png")
    lines = [{"image": f"imgs/{i}.png", "caption": f"c{i}"} for i in range(3)] + [{"image": "imgs/missing.png"}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{bad json\n")
    run_stage(IngestStage(tmp_path / "run2", IngestConfig(source=str(tmp_path / "t.jsonl"))))
    got = open_complete(tmp_path / "run2" / "corpus").read_all().to_pylist()
    assert [r["status"] for r in got] == ["ok", "ok", "ok", "missing", "unreadable"]

    tar_path = tmp_path / "shard-0000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i, im in enumerate(imgs):
            for name, data in [(f"{i:04d}.png", _png(im)), (f"{i:04d}.txt", f"tar caption {i}".encode())]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    run_stage(IngestStage(tmp_path / "run3", IngestConfig(source=str(tar_path))))
    got = open_complete(tmp_path / "run3" / "corpus").read_all().to_pylist()
    assert [r["caption"] for r in got] == ["tar caption 0", "tar caption 1", "tar caption 2"]
    assert [r["id"] for r in got] == [content_id(_png(im)) for im in imgs]
