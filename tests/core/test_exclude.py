"""ingest.exclude: every way a list names a file (paths in several forms, links, hashes) keeps it out,
and the manifest says which rule did it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from megapairs.artifacts import open_complete
from megapairs.configbase import ConfigError
from megapairs.corpus.config import IngestConfig
from megapairs.corpus.stage import IngestStage, content_id
from megapairs.stages import run_stage
from tests.conftest import draw_shape

SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
       b'<circle cx="20" cy="20" r="15" fill="%s"/></svg>')


def _ingest(root: Path, **cfg) -> tuple[dict[str, dict], dict]:
    run_stage(IngestStage(root, IngestConfig(**cfg)))
    art = open_complete(root / "corpus")
    return {r["source"]: r for r in art.read_all().to_pylist()}, art.manifest()


def _png(path: Path, colour: str, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_shape("circle", colour, seed=seed).save(path)
    return path


@pytest.fixture()
def tree(tmp_path):
    """A corpus folder (with subfolders, a link, an SVG) and files outside it that lists refer to."""
    src = tmp_path / "usr" / "share" / "clips"
    files = {name: _png(src / name, c, i) for i, (name, c) in enumerate([
        ("animals/abs.png", "red"), ("animals/pkg.png", "blue"), ("food/dot.png", "green"),
        ("food/sha1.png", "yellow"), ("food/sha256.png", "red"), ("food/id.png", "blue"),
        ("food/sum.png", "green"), ("keep/a.png", "yellow"), ("keep/b.png", "red")], start=10)}
    (src / "vector").mkdir()
    (src / "vector" / "drawing.svg").write_bytes(SVG % b"red")
    (src / "vector" / "render.svg").write_bytes(SVG % b"blue")
    outside = tmp_path / "elsewhere"
    real = _png(outside / "real.png", "green", 30)
    os.symlink(real, src / "keep" / "link_to_listed.png")  # the corpus holds a link; the list names the file
    os.symlink(src / "food" / "target.png", outside / "alias.png")  # the list names a link into the corpus
    _png(src / "food" / "target.png", "yellow", 31)
    # Same bytes as a listed file, under another name: must go too.
    (src / "keep" / "copy_of_abs.png").write_bytes(files["animals/abs.png"].read_bytes())
    return tmp_path, src, files, outside


def test_every_entry_form_excludes_its_file(tree, tmp_path):
    root, src, files, outside = tree
    from megapairs.corpus.images import render_svg

    render = render_svg((src / "vector" / "render.svg").read_bytes(), 256)
    sha1 = hashlib.sha1(files["food/sha1.png"].read_bytes()).hexdigest()
    sha256 = hashlib.sha256(files["food/sha256.png"].read_bytes()).hexdigest()
    paths_list = tmp_path / "paths.txt"
    paths_list.write_bytes((
        "# benchmark drawings\r\n"
        f"  {files['animals/abs.png']}  \r\n"                        # absolute, padded, CRLF
        f"{str(files['animals/pkg.png']).lstrip('/')}\r\n"          # package-relative, as dpkg -L minus '/'
        "\r\n"
        "./food/dot.png\r\n"                                          # relative to the source, ./ prefix
        f"{outside / 'real.png'}\r\n"                                 # the corpus has a link to it
        f"{outside / 'alias.png'}\r\n"                                # a link to a corpus file
        f"{str(src / 'vector' / 'drawing.svg').lstrip('/')}\r\n"     # an SVG by its SVG path
        "usr/share/clips/never/there.png\r\n"                         # matches nothing
    ).encode())
    hash_list = tmp_path / "hashes.txt"
    hash_list.write_text(
        f"{sha1.upper()}\n"
        f"sha256:{sha256}\n"
        f"{content_id(files['food/id.png'].read_bytes())}\n"
        f"{hashlib.sha256(files['food/sum.png'].read_bytes()).hexdigest()}  ./somewhere/else.png\n"
        f"{hashlib.sha256(render).hexdigest()}\n"                    # hash of a PNG render of an SVG
        f"bench/images/ab/{content_id(files['keep/b.png'].read_bytes())}.jpg\n"  # an exported image
    )
    rows, manifest = _ingest(tmp_path / "run", source=str(src), exclude=[str(paths_list), str(hash_list)])
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {
        "animals/abs.png": "excluded", "animals/pkg.png": "excluded", "food/dot.png": "excluded",
        "food/sha1.png": "excluded", "food/sha256.png": "excluded", "food/id.png": "excluded",
        "food/sum.png": "excluded", "food/target.png": "excluded", "keep/link_to_listed.png": "excluded",
        "keep/copy_of_abs.png": "excluded", "vector/drawing.svg": "excluded", "vector/render.svg": "excluded",
        "keep/b.png": "excluded", "keep/a.png": "ok",
    }
    assert "sha1" in rows["food/sha1.png"]["reason"] and "hashes.txt line 1" in rows["food/sha1.png"]["reason"]
    assert "PNG render" in rows["vector/render.svg"]["reason"]
    assert rows["keep/copy_of_abs.png"]["reason"] == "same bytes as excluded animals/abs.png"
    ex = manifest["exclude"]
    assert ex["by_kind"] == {"path": 1, "relative_path": 3, "symlink": 2, "sha1": 1, "sha256": 3, "id": 2,
                             "same_bytes_as_excluded": 1}
    assert ex["excluded"] == 13
    assert ex["by_file"][str(paths_list)] == {"entries": 7, "entries_matched": 6, "excluded": 6}
    assert ex["by_file"][str(hash_list)] == {"entries": 6, "entries_matched": 6, "excluded": 6}


def test_missing_list_is_a_clear_error_and_an_edited_list_is_another_corpus(tmp_path):
    src = tmp_path / "src"
    _png(src / "a.png", "red", 1)
    _png(src / "b.png", "blue", 2)
    with pytest.raises(ConfigError, match="cannot read .*nope.txt"):
        run_stage(IngestStage(tmp_path / "run", IngestConfig(source=str(src), exclude=[str(tmp_path / "nope.txt")])))
    lst = tmp_path / "list.txt"
    lst.write_text("a.png\n")
    assert IngestConfig(exclude=str(lst)).exclude == [str(lst)]  # `ingest.exclude=list.txt` on the command line
    h1 = IngestStage(tmp_path / "run", IngestConfig(source=str(src), exclude=[str(lst)])).output().config_hash
    lst.write_text("b.png\n")
    h2 = IngestStage(tmp_path / "run", IngestConfig(source=str(src), exclude=[str(lst)])).output().config_hash
    assert h1 != h2


def test_real_openclipart_package_paths(tmp_path):
    """Package-relative entries (as the openclipart-svg file list prints them) exclude the real files."""
    base = Path("/usr/share/openclipart/svg")
    if not base.is_dir():
        pytest.skip("openclipart-svg is not installed")
    picked = sorted(p for p in (base / "animals").rglob("*.svg"))[:3]
    lst = tmp_path / "held_out.txt"
    lst.write_text("".join(f"{str(p).lstrip('/')}\n" for p in picked))
    folder = tmp_path / "mini"
    folder.mkdir()
    others = [p for p in sorted((base / "food").rglob("*.svg")) if p.read_bytes() not in {q.read_bytes() for q in picked}]
    for i, p in enumerate(picked + others[:2]):
        os.symlink(p, folder / f"{i}.svg")  # a corpus of links into the package
    rows, manifest = _ingest(tmp_path / "run", source=str(folder), exclude=[str(lst)])
    assert [rows[f"{i}.svg"]["status"] for i in range(5)] == ["excluded"] * 3 + ["ok"] * 2
    assert manifest["exclude"]["by_kind"] == {"symlink": 3}
