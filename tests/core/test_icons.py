"""The `icons` source on a small theme tree made here (and on an installed theme when present), and
mixing it with another source at fixed per-source counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from megapairs.artifacts import open_complete
from megapairs.configbase import ConfigError
from megapairs.corpus import icons
from megapairs.corpus.config import IngestConfig
from megapairs.corpus.meta import load_meta
from megapairs.corpus.sources import SourceError
from megapairs.corpus.stage import IngestStage
from megapairs.stages import run_stage
from tests.conftest import draw_shape

INDEX = """[Icon Theme]
Name={name}
Directories=16x16/actions,48x48/status,128x128/status,512x512/status,scalable/actions,scalable/places

[16x16/actions]
Size=16
Context=Actions
Type=Fixed

[48x48/status]
Size=48
Context=Status
Type=Fixed

[128x128/status]
Size=128
Context=Status
Type=Fixed

[512x512/status]
Size=512
Context=Status
Type=Fixed

[scalable/actions]
Size=48
MaxSize=256
Context=Actions
Type=Scalable

[scalable/places]
Size=48
Context=Places
Type=Scalable
"""


def _svg(fill: str, shape: str = "circle") -> bytes:
    body = ('<circle cx="20" cy="20" r="15"' if shape == "circle" else '<rect x="5" y="5" width="30" height="30"')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">{body} fill="{fill}"/></svg>'.encode()


def _theme(base: Path, name: str, colour: str, seed: int) -> Path:
    root = base / name
    for d in ("16x16/actions", "48x48/status", "128x128/status", "512x512/status", "scalable/actions",
              "scalable/places"):
        (root / d).mkdir(parents=True)
    (root / "index.theme").write_text(INDEX.format(name=name.title()))
    (root / "scalable/actions/go-up.svg").write_bytes(_svg(colour))
    (root / "scalable/actions/go-down.svg").write_bytes(_svg(colour, "rect"))
    os.symlink("go-up.svg", root / "scalable/actions/up.svg")  # an alias: one item
    os.symlink("go-up.svg", root / "scalable/actions/gtk-go-up.svg")
    draw_shape("triangle", "red", seed=seed).save(root / "16x16/actions/go-up.png")  # a raster of the same name
    for size in (48, 128, 512):  # raster only: the largest <= 256 wins
        draw_shape("square", "green", size=size, seed=seed + size).save(root / f"{size}x{size}/status/battery-empty.png")
    draw_shape("square", "yellow", size=48, seed=seed).save(root / "48x48/status/battery-full.png")
    # the same bytes in every theme: collapses to one id at ingest
    (root / "scalable/places/folder-red-music.svg").write_bytes(_svg("#cc0000", "rect"))
    (root / "scalable/places/notes.txt").write_text("not an icon")
    return root


@pytest.fixture()
def icon_dirs(tmp_path, monkeypatch):
    base = tmp_path / "icons"
    _theme(base, "gnome-brave", "#3465a4", 1)
    _theme(base, "gnome-wine", "#a40000", 2)
    other = base / "Papirus-Dark" / "scalable" / "actions"
    other.mkdir(parents=True)
    (base / "Papirus-Dark" / "index.theme").write_text(
        "[Icon Theme]\nName=Papirus-Dark\nDirectories=scalable/actions\n\n"
        "[scalable/actions]\nSize=16\nContext=Actions\nType=Scalable\n")
    os.symlink(base / "gnome-brave/scalable/actions/go-down.svg", other / "go-down.svg")  # another theme's file
    (other / "go-left.svg").write_bytes(_svg("#eeeeee"))
    (other / "go-right.svg").write_bytes(_svg("#eeeeee", "rect"))
    monkeypatch.setattr(icons, "ICON_DIRS", [base])
    return base


def test_one_size_per_icon_aliases_once_and_metadata(icon_dirs):
    items = icons.list_icons("icons:gnome-brave")
    by_name = {it["meta"]["icon_name"]: it for it in items}
    assert sorted(by_name) == ["battery-empty", "battery-full", "folder-red-music", "go-down", "go-up"]
    up = by_name["go-up"]
    assert up["uri"].endswith("scalable/actions/go-up.svg")  # scalable beats the 16 px raster
    assert up["meta"]["aliases"] == ["gtk-go-up", "up"]
    assert up["caption"] == "blue go up arrow icon, gnome brave theme"
    assert {k: up["meta"][k] for k in ("theme", "theme_colour", "colour", "context", "scalable", "size")} == {
        "theme": "gnome-brave", "theme_colour": "blue", "colour": "blue", "context": "actions",
        "scalable": True, "size": 48}
    assert by_name["battery-empty"]["uri"].endswith("128x128/status/battery-empty.png")
    assert by_name["battery-empty"]["meta"]["size"] == 128 and not by_name["battery-empty"]["meta"]["scalable"]
    folder = by_name["folder-red-music"]
    assert folder["meta"]["colour"] == "red" and folder["caption"] == "red music folder icon, gnome brave theme"
    assert up["label"] == "actions"


def test_other_themes_files_and_unknown_themes(icon_dirs):
    dark = icons.list_icons("icons:Papirus-Dark")
    assert sorted(it["meta"]["icon_name"] for it in dark) == ["go-left", "go-right"]  # go-down is brave's
    assert all(it["meta"]["theme_variant"] == "dark" and it["meta"]["colour"] is None for it in dark)
    with pytest.raises(icons.IconSourceError, match="'gnome-blue' is not installed .*gnome-brave"):
        icons.list_icons("icons:gnome-blue")
    assert [it["meta"]["icon_name"] for it in icons.list_icons("icons:gnome-wine/places")] == ["folder-red-music"]
    picked = icons.list_icons("icons:gnome-wine/*/go-*|battery-f*")
    assert [it["meta"]["icon_name"] for it in picked] == ["go-down", "go-up", "battery-full"]
    by_path = icons.list_icons(f"icons:{icon_dirs / 'gnome-wine'}")
    assert len(by_path) == 5 and by_path[0]["meta"]["theme_colour"] == "red"


def test_series_counts(icon_dirs):
    counts = icons.series_counts(icons.list_icons("icons"))
    # go-up, go-down, battery-empty, -full in blue and red (folder-red-music is red in both: no series)
    assert counts["colour_series"] == 4 and counts["colour_series_icons"] == 8
    # go-up/go-down in two themes, go-left/go-right in Papirus-Dark
    assert counts["direction_pairs"] == 3
    assert counts["state_pairs"] == 2  # battery-empty/full per theme


def test_mixed_ingest_counts_duplicates_and_meta(icon_dirs, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, c in enumerate(("red", "green", "blue", "yellow")):
        draw_shape("circle", c, seed=i).save(clips / f"{i}.png")
    src = {str(clips): 2, "icons:gnome-brave,gnome-wine": None}
    run_stage(IngestStage(tmp_path / "run", IngestConfig(source=src, shard_size=3)))
    art = open_complete(tmp_path / "run" / "corpus")
    rows = art.read_all().to_pylist()
    assert [r["source"] for r in rows[:2]] == ["0.png", "2.png"]  # 2 of 4, spread
    assert len(rows) == 2 + 10
    dup = [r for r in rows if r["status"] == "duplicate"]
    assert [r["source"] for r in dup] == ["gnome-wine/scalable/places/folder-red-music.svg"]
    assert art.manifest()["source"] == [[str(clips), 2], ["icons:gnome-brave,gnome-wine", None]]
    meta = load_meta(art)
    assert len(meta) == 9  # the 10 icons, one a duplicate; the PNG clips have no metadata
    wine_up = next(m for m in meta.values() if m["theme"] == "gnome-wine" and m["icon_name"] == "go-up")
    assert wine_up["colour"] == "red" and wine_up["readable_name"] == "go up arrow"
    # a second run with the same config lists the same items in the same order
    run_stage(IngestStage(tmp_path / "run2", IngestConfig(source=src, shard_size=3)))
    again = open_complete(tmp_path / "run2" / "corpus").read_all().to_pylist()
    assert [r["id"] for r in again] == [r["id"] for r in rows]


def test_bad_source_config(icon_dirs, tmp_path):
    with pytest.raises(ConfigError, match="per-source counts"):
        IngestConfig(source={"icons": 0})
    with pytest.raises(ConfigError, match="at least one source"):
        IngestConfig(source=[])
    with pytest.raises(SourceError, match="not installed"):
        IngestStage(tmp_path / "run", IngestConfig(source="icons:nope")).plan()


def test_installed_gnome_brave_theme():
    if not Path("/usr/share/icons/gnome-brave/index.theme").is_file():
        pytest.skip("gnome-brave-icon-theme is not installed")
    items = icons.list_icons("icons:gnome-brave")
    names = {it["meta"]["icon_name"] for it in items}
    assert {"go-up", "go-down", "folder"} <= names
    assert all(it["meta"]["theme_colour"] == "blue" and it["meta"]["scalable"] for it in items)
    assert len({os.path.realpath(it["uri"]) for it in items}) == len(items)
    assert "up" not in names and "up" in next(it for it in items if it["meta"]["icon_name"] == "go-up")["meta"]["aliases"]
