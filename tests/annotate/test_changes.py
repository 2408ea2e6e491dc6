"""The `changes:` describer: what it states is checkable against the metadata and the pixels, and a
pair with nothing to state is dropped, not restated."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from megapairs.annotate import changes, pixels
from megapairs.annotate.validate import check_instructions

from .helpers import clipart as _clipart



def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _arrow(fill: str, mirror: bool = False) -> Image.Image:
    """An asymmetric drawing on white: an arrow pointing right (left when mirrored)."""
    img = Image.new("RGB", (160, 160), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([20, 65, 100, 95], fill=fill, outline="black")
    d.polygon([(100, 40), (145, 80), (100, 120)], fill=fill, outline="black")
    return img.transpose(Image.FLIP_LEFT_RIGHT) if mirror else img


# -- pixels ------------------------------------------------------------------------------------------
def test_pixels_see_a_recoloured_copy():
    ev = pixels.compare(pixels.pixel_stats(_arrow("red")), pixels.pixel_stats(_arrow("green")))
    assert ev.same_shape and (ev.colour_from, ev.colour_to) == ("red", "green")
    assert not ev.transform


def test_pixels_see_a_mirrored_copy_and_black_and_white():
    ev = pixels.compare(pixels.pixel_stats(_arrow("blue")), pixels.pixel_stats(_arrow("blue", mirror=True)))
    assert ev.transform == "mirror" and not ev.colour_to
    ev = pixels.compare(pixels.pixel_stats(_arrow("orange")), pixels.pixel_stats(_arrow("gray")))
    assert ev.to_black_and_white


def test_pixels_say_nothing_about_different_drawings():
    circle = Image.new("RGB", (160, 160), "white")
    ImageDraw.Draw(circle).ellipse([30, 30, 130, 130], fill="green", outline="black")
    ev = pixels.compare(pixels.pixel_stats(_arrow("red")), pixels.pixel_stats(circle))
    assert not ev.same_shape and not ev.colour_to and not ev.transform


# -- metadata + pixels -------------------------------------------------------------------------------
def test_colour_from_the_file_name_when_the_titles_are_equal():
    p = changes.pair_changes("balloons-aj: balloons, party", "party", "balloons-aj: balloons, party", "party",
                             "/x/balloon-white-aj.svg", "/x/balloon-green-aj.svg")
    assert [(c.kind, c.source, c.target) for c in p.changes] == [("colour", "white", "green")]
    assert p.changes[0].evidence == ["file name"]
    note = changes.describe(p)
    assert "green" in note and note.startswith("Both images show balloons")


def test_no_change_is_stated_for_restatements_and_unrelated_things():
    same = changes.pair_changes("Lighthouse: boat", "", "Lighthouse: boat", "", "/a/lighthouse.svg", "/b/lighthouse2.svg")
    assert not same.describable and changes.describe(same) == ""
    # an attribute word differs, but the pictures show different things (nothing shared)
    unrelated = changes.pair_changes("red car", "", "blue bird", "", "", "")
    assert not unrelated.describable
    # serial numbers in titles are no number change ("glace 05" -> "glace 7")
    serial = changes.pair_changes("glace 05 bw", "", "glace 7", "", "", "")
    assert all(c.kind != "number" for c in serial.changes)


def test_direction_state_and_black_and_white_from_titles():
    kinds = lambda a, b: [(c.kind, c.source, c.target) for c in changes.pair_changes(a, "", b, "").changes]  # noqa: E731
    assert kinds("arrow up blue", "arrow down blue") == [("direction", "up", "down")]
    assert kinds("trash can empty", "trash can full") == [("state", "empty", "full")]
    assert kinds("Apple: fruit", "Apple (B and W): fruit") == [("to_black_and_white", "colour", "black and white")]
    # icon captions: the theme clause is not content ("gnome brave" -> "gnome wine" is no object swap)
    assert kinds("blue go up arrow icon, gnome brave theme", "red go up arrow icon, gnome wine theme") == \
        [("colour", "blue", "red")]
    # a shade word is part of the colour, not an object ("pale orange" is no swap of "pale")
    assert kinds("blue important folder icon, papirus theme", "pale orange important folder icon, papirus theme") == \
        [("colour", "blue", "orange")]


def test_instructions_ask_for_the_target_and_pass_the_checks():
    p = changes.pair_changes("arrow left blue", "", "arrow right blue", "", "", "")
    note = changes.describe(p)
    texts = changes.instructions(p, random.Random(0), 5)
    assert len(texts) >= 3 and len(set(texts)) == len(texts)
    assert all("right" in t.lower() for t in texts)
    from megapairs.annotate.template import note_parts
    from megapairs.annotate.validate import wanted_and_avoided

    # "left" may appear only as what to move away from ("Facing right instead of left.")
    assert not any("left" in wanted_and_avoided(t)[0] for t in texts)

    check = check_instructions(texts, note, min_count=3, max_count=6, max_chars=300, min_words=1,
                               relation_parts=note_parts(note), change_words=changes.change_words(p))
    assert check.ok, check.reason


def test_restatements_and_requests_for_the_source_are_rejected():
    p = changes.pair_changes("balloons", "", "balloons", "", "/a/balloon-white.svg", "/a/balloon-green.svg")
    note = changes.describe(p)
    from megapairs.annotate.template import note_parts

    check = check_instructions(["Another balloon design like this one.", "Make it white.", "Make it green."],
                               note, min_count=1, max_count=6, max_chars=300, min_words=1,
                               relation_parts=note_parts(note), change_words=changes.change_words(p))
    assert check.instructions == ["Make it green."]
    reasons = dict(check.rejected)
    assert reasons["Another balloon design like this one."] == "no_change_named"
    assert reasons["Make it white."] == "wrong_direction"


# -- real OpenClipart pairs --------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,expected", [
    ("recreation/party/balloon-white-aj.svg", "recreation/party/balloon-green-aj.svg", ("colour", "green")),
    ("recreation/party/balloon-green-aj.svg", "recreation/party/balloon-red-aj.svg", ("colour", "red")),
    ("shapes/arrows/arrow-left-blue_benji_pa_01.svg", "shapes/arrows/arrow-right-blue_benji_p_01.svg",
     ("direction", "right")),
    ("signs_and_symbols/map_symbols/aiga_up_arrow1.svg", "signs_and_symbols/map_symbols/aiga_down_arrow1.svg",
     ("direction", "down")),
    ("computer/icons/gnome-fs-trash-empty.svg", "computer/icons/gnome-fs-trash-full.svg", ("state", "full")),
])
def test_real_clipart_pairs(a, b, expected):
    (ca, ua, ia), (cb, ub, ib) = _clipart(a), _clipart(b)
    p = changes.pair_changes(ca, "", cb, "", ua, ub, ia, ib)
    assert (p.changes[0].kind, p.changes[0].target) == expected
    if expected[0] == "colour" and "white" not in a:  # the pixels agree: the target's colour is the one named
        # (a white balloon on a white page has no fill to compare: the file name alone says it)
        assert "pixels" in p.changes[0].evidence
        assert pixels.pixel_stats(ib).dominant == expected[1]


def test_real_clipart_flags_are_not_recolourings():
    (ca, ua, ia), (cb, ub, ib) = (_clipart("signs_and_symbols/flags/america/mexico.svg"),
                                  _clipart("signs_and_symbols/flags/america/chile.svg"))
    p = changes.pair_changes(ca, "", cb, "", ua, ub, ia, ib)
    assert all(c.kind not in ("colour", "to_colour", "to_black_and_white") for c in p.changes)


def test_grid_is_small_and_deterministic():
    a = pixels.pixel_stats(_png(_arrow("red")))
    b = pixels.pixel_stats(_png(_arrow("red")))
    assert a.crop_mask.shape == (pixels.GRID, pixels.GRID)
    assert np.array_equal(a.crop_mask, b.crop_mask) and a.colours == b.colours
