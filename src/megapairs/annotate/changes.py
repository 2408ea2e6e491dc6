"""What changes from a source image to a target image, from evidence only: the `changes:` describer.

Evidence comes from three places, each used for what it can say:
- titles (the caption's title part): attribute words (colour, black-and-white, direction, state,
  size, number) and, when both titles share a content word, object swaps, additions and removals;
- file names (`x/balloon-green-aj.svg`): attribute words only (file names carry author tags and
  serial numbers, so other differences in them are not trusted);
- pixels (`pixels.py`): dominant colour, black-and-white vs colour, a mirrored / flipped / rotated
  copy of the same shape.

A change is stated only when a source says so; a pair with no stated change gets no note (the row is
dropped with the reason "no describable difference"). The note keeps the MegaPairs template shape
("Both images show …. However, the source image shows …, whereas the target image shows ….") and
adds one "Change:" sentence that writers (model or `changes:`) turn into instructions.
"""

from __future__ import annotations

import random
import re
from itertools import zip_longest
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from megapairs.annotate.pixels import PixelEvidence, PixelStats, compare, pixel_stats
from megapairs.annotate.template import parse_caption, stem

COLOURS = {"red", "green", "blue", "yellow", "orange", "purple", "violet", "pink", "black", "white", "grey",
           "gray", "brown", "cyan", "magenta", "gold", "golden", "silver", "beige", "teal", "turquoise", "navy",
           "maroon", "lime", "aqua", "olive", "carmine", "indigo"}
_COLOUR_CANON = {"gray": "grey", "golden": "gold", "violet": "purple", "aqua": "cyan", "carmine": "red",
                 "indigo": "blue"}
DIRECTIONS = {"left", "right", "up", "down", "north", "south", "east", "west", "upward", "downward", "forward",
              "backward", "top", "bottom"}
_DIRECTION_CANON = {"upward": "up", "downward": "down", "top": "up", "bottom": "down"}
# each state word and its group: a change is stated only between two words of one group
_STATE_GROUPS = [
    {"open", "opened", "closed", "close", "shut"}, {"empty", "full", "half"}, {"on", "off"},
    {"muted", "unmuted", "mute", "loud", "quiet"}, {"locked", "unlocked"}, {"lit", "unlit"},
    {"happy", "sad", "angry", "smiling", "crying", "surprised"}, {"day", "night"},
    {"high", "medium", "low"}, {"start", "stop", "pause", "play"}, {"new", "old"},
    {"summer", "winter", "autumn", "spring", "fall"}, {"filled", "blank", "plain"},
    {"awake", "asleep", "sleeping"}, {"wet", "dry"}, {"hot", "cold"},
]
STATES = {w: i for i, g in enumerate(_STATE_GROUPS) for w in g}
_STATE_CANON = {"opened": "open", "close": "closed", "shut": "closed", "mute": "muted", "sleeping": "asleep",
                "fall": "autumn"}
SIZES = {"small", "big", "large", "tiny", "huge", "little", "mini", "giant"}
_SIZE_CANON = {"large": "big", "huge": "big", "giant": "big", "little": "small", "tiny": "small", "mini": "small"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10, "eleven": 11, "twelve": 12}
BW_PHRASES = re.compile(r"\b(?:b\s*(?:and|&|n)\s*w|bw|black\s*(?:and|&|n)\s*white|monochrome|gr[ae]yscale"
                        r"|grayscaled?|lineart|line\s+art)\b", re.IGNORECASE)
_MINOR = {"a", "an", "the", "of", "on", "in", "with", "and", "at", "to", "its", "is", "are", "by", "for", "from",
          "icon", "icons", "clipart", "clip", "art", "picture", "image", "drawing", "svg", "png", "theme", "symbol",
          "version", "color", "colour", "coloured", "colored", "style", "aj", "id",
          # OpenClipart placeholder titles ("R16 sibmission") name a batch upload, not a subject
          "sibmission", "submission", "r16", "unsorted", "untitled",
          # shade words belong to the colour beside them ("pale orange", "dark cyan"), not to the object
          "pale", "deep", "dark", "light", "bright",
          # pointer words point at another picture, they name no object ("another house" -> "wooden
          # house" is no swap of "another" for "wooden")
          "another", "other", "others", "same", "different", "alternative", "alternate", "variant"}
# An all-capitals word in a title that also has small letters ("AIGA Symbol Signs") is an acronym:
# a collection, an organisation or a format, not an object of the picture.
_ACRONYM = re.compile(r"\b[A-Z]{2,6}\b")
_WORD = re.compile(r"[a-z]+|[0-9]+")


@dataclass
class Change:
    kind: str  # colour | to_black_and_white | to_colour | direction | transform | state | size | number |
    #            swap | add | remove
    source: str = ""  # the source's value ("" when it has none, e.g. for add)
    target: str = ""  # the target's value
    evidence: list[str] = field(default_factory=list)  # title | file name | pixels
    # swap: what each side is called as a whole ("dog head" for monkey -> dog), for wordings that
    # ask for the thing rather than a bare word ("a dog head instead", not "same but dog")
    source_name: str = ""
    target_name: str = ""


@dataclass
class PairChanges:
    subject: str  # what both show ("" when unknown)
    changes: list[Change]
    kept: list[str]  # what stays (shared title words, "the same shape")
    icon: bool = False  # both titles name an icon ("network transmit icon, gnome wise theme")

    @property
    def describable(self) -> bool:
        return bool(self.changes)


def words(text: str) -> list[str]:
    return _WORD.findall(str(text or "").lower())


def _file_words(uri: str) -> list[str]:
    name = PurePosixPath(str(uri or "").split("::")[0].split("#")[0]).stem
    return words(name.replace("_", " ").replace("-", " "))


@dataclass
class Side:
    """One image's attribute words (by kind) and title content words."""

    title_words: list[str]
    colours: set[str] = field(default_factory=set)
    directions: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    sizes: set[str] = field(default_factory=set)
    numbers: set[int] = field(default_factory=set)
    bw: bool = False
    acronyms: set[str] = field(default_factory=set)  # lower-cased
    all_words: list[str] = field(default_factory=list)  # every title word, connectors included
    evidence: dict[str, str] = field(default_factory=dict)  # "kind:value" -> title | file name

    def note(self, kind: str, value: str, where: str) -> None:
        self.evidence.setdefault(f"{kind}:{value}", where)


# Papirus folder colour schemes named after desktops (folder-breeze-music): no object. Adwaita's and
# Breeze's folders are blue on the pixels; Nordic's, Yaru's and "custom" are greyish with a tint, so
# their colour is left to the pixels.
_SCHEME_COLOURS = {"adwaita": "blue", "breeze": "blue", "nordic": "", "yaru": "", "custom": ""}
_SCHEME = re.compile(r"\b(" + "|".join(_SCHEME_COLOURS) + r")\b")


def _scheme_words(text: str) -> str:
    """A Papirus caption's or file name's scheme names as their colour (or nothing)."""
    return _SCHEME.sub(lambda m: _SCHEME_COLOURS[m.group(1)], text)


# "…, gnome brave theme" (icon captions): the theme is where the picture comes from, not what it shows
_THEME_CLAUSE = re.compile(r",\s*[\w\s-]{1,40}\btheme\b.*$", re.IGNORECASE)


# (kind, words, canonical forms, Side attribute), tried in this order
_LEXICONS = (("colour", COLOURS, _COLOUR_CANON, "colours"), ("direction", DIRECTIONS, _DIRECTION_CANON, "directions"),
             ("state", set(STATES), _STATE_CANON, "states"), ("size", SIZES, _SIZE_CANON, "sizes"))


def read_side(caption: str, label: str, uri: str = "") -> Side:
    info = parse_caption(caption, label)
    papirus = "papirus" in caption.lower() or "/papirus" in uri.lower()
    title = _THEME_CLAUSE.sub("", info.title or "")
    if papirus:
        title, uri = _scheme_words(title.lower()), _scheme_words(uri.lower())
    all_words = words(BW_PHRASES.sub(" ", title))
    side = Side([w for w in all_words if w not in _MINOR], all_words=all_words)
    if re.search(r"[a-z]", title):
        side.acronyms = {a.lower() for a in _ACRONYM.findall(title)}
    for where, text in (("title", title), ("file name", " ".join(_file_words(uri)))):
        if BW_PHRASES.search(text):
            side.bw = True
            side.note("bw", "bw", where)
        for w in words(BW_PHRASES.sub(" ", text)):
            for kind, lexicon, canon, attr in _LEXICONS:
                if w in lexicon:
                    value = canon.get(w, w)
                    getattr(side, attr).add(value)
                    side.note(kind, value, where)
                    break
            else:
                if where == "title" and w in NUMBER_WORDS:
                    side.numbers.add(NUMBER_WORDS[w])
    return side


def _attribute_words() -> set[str]:
    return COLOURS | DIRECTIONS | set(STATES) | SIZES | set(NUMBER_WORDS)


def _content(side: Side) -> list[str]:
    attrs = _attribute_words()
    return [w for w in side.title_words if w not in attrs and not w.isdigit() and len(w) > 1]


def _single_change(kind: str, src: set, tgt: set, s: Side, t: Side) -> Change | None:
    """One attribute changes when the target names a value the source lacks and vice versa (or the
    source names none, for colour: then only pixels may say what it was)."""
    gone, new = src - tgt, tgt - src
    if not new or len(new) > 1 or len(gone) > 1:
        return None
    if not gone and kind != "colour":
        return None
    (to,) = new
    frm = next(iter(gone)) if gone else ""
    if kind == "state" and frm and STATES.get(frm) != STATES.get(to):
        return None
    ev = sorted({t.evidence.get(f"{kind}:{to}", "title"), *([s.evidence.get(f"{kind}:{frm}", "title")] if frm else [])})
    return Change(kind, str(frm), str(to), ev)


def metadata_changes(s: Side, t: Side) -> tuple[list[Change], list[str]]:
    """Changes the titles and file names state, and the title words both share."""
    out: list[Change] = []
    for kind, a, b in (("colour", s.colours, t.colours), ("direction", s.directions, t.directions),
                       ("state", s.states, t.states), ("size", s.sizes, t.sizes)):
        if kind == "colour" and (s.bw or t.bw):
            continue  # "black" and "white" inside a black-and-white mark are no colour names
        c = _single_change(kind, a, b, s, t)
        if c is not None:
            out.append(c)
    if s.bw and not t.bw and t.colours:
        out.append(Change("to_colour", "black and white", _join(sorted(t.colours)) or "colour",
                          [s.evidence.get("bw:bw", "title")]))
    elif t.bw and not s.bw:
        out.append(Change("to_black_and_white", _join(sorted(s.colours)) or "colour", "black and white",
                          [t.evidence.get("bw:bw", "title")]))
    if len(s.numbers) == 1 and len(t.numbers) == 1 and s.numbers != t.numbers:
        out.append(Change("number", str(next(iter(s.numbers))), str(next(iter(t.numbers))), ["title"]))
    sc, tc = _content(s), _content(t)
    ss, ts = {stem(w) for w in sc}, {stem(w) for w in tc}
    shared = [w for w in tc if stem(w) in ss]
    if shared:
        # a word only one side has that is an acronym there names where the picture comes from
        removed = [w for w in sc if stem(w) not in ts and w not in s.acronyms and w not in CONNECTORS]
        added = [w for w in tc if stem(w) not in ss and w not in t.acronyms and w not in CONNECTORS]
        if added and removed and len(added) <= 2 and len(removed) <= 2 and len(shared) >= max(len(added), len(removed)):
            out.append(Change("swap", " ".join(removed), " ".join(added), ["title"],
                              _name(sc, removed), _name(tc, added)))
        elif added and not removed and len(added) <= 3 and _after_connector(t.all_words, added):
            out.append(Change("add", "", " ".join(added), ["title"]))
        elif removed and not added and len(removed) <= 3 and _after_connector(s.all_words, removed):
            out.append(Change("remove", " ".join(removed), "", ["title"]))
    return out, list(dict.fromkeys(shared))


CONNECTORS = {"with", "and", "plus", "holding", "carrying", "wearing", "under", "over", "behind"}


def _name(content: list[str], changed: list[str]) -> str:
    """A side's own name for a swap's wordings: its title's content words, with the changed words
    in it ("monkey head" -> "dog head"); "" when the title is long (the bare words say it better)."""
    return " ".join(content) if 2 <= len(content) <= 3 and set(changed) <= set(content) else ""


def _after_connector(title: list[str], extra: list[str]) -> bool:
    """Extra title words count as an added (or removed) object only after a connector ("house with
    tree" vs "house"); an extra adjective ("fried eggs" vs "eggs") is no object. `title` holds all
    the title's words (the connectors are minor words, left out of `Side.title_words`)."""
    for i, w in enumerate(title):
        if w in CONNECTORS and set(extra) <= set(title[i + 1:]):
            return True
    return False


def article(noun: str) -> str:
    vowel = noun[:1].lower() in "aeiou" and not noun.lower().startswith(("uni", "use", "eu", "one"))
    return ("an " if vowel else "a ") + noun


def _an(name: str) -> str:
    """"a dog head", "an owl"; a plural stays bare ("queens"); "" for no name."""
    if not name:
        return ""
    return name if name.endswith("s") and not name.endswith("ss") else article(name)


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def merge_pixels(changes: list[Change], px: PixelEvidence, s: Side, t: Side) -> list[Change]:
    """Add what only the pixels show, and mark metadata changes the pixels confirm."""
    kinds = {c.kind for c in changes}
    for c in changes:
        if c.kind == "colour" and px.colour_to == c.target:
            c.evidence = sorted({*c.evidence, "pixels"})
            if not c.source and px.colour_from:
                c.source = px.colour_from
    # the pixels' colour change stands only where no title names another colour for that side ("brown
    # network transmit icon" -> "brown network idle icon" is no change from orange)
    if ("colour" not in kinds and px.colour_from and px.colour_to and not (t.colours - {px.colour_to})
            and not (s.colours - {px.colour_from}) and not s.bw and not t.bw):
        changes.append(Change("colour", px.colour_from, px.colour_to, ["pixels"]))
    if not kinds & {"to_black_and_white", "to_colour", "colour"}:
        if px.to_black_and_white and not s.bw:
            changes.append(Change("to_black_and_white", px.colour_from or "colour", "black and white", ["pixels"]))
        elif px.to_colour:
            changes.append(Change("to_colour", "black and white", px.colour_to or "colour", ["pixels"]))
    if px.transform and "direction" not in kinds:
        changes.append(Change("transform", "", px.transform, ["pixels"]))
    elif px.transform:
        for c in changes:
            if c.kind == "direction":
                c.evidence = sorted({*c.evidence, "pixels"})
    return changes


def _confirmed(changes: list[Change]) -> list[Change]:
    """A colour change from an unnamed colour stays only when the pixels confirm the target colour."""
    return [c for c in changes if not (c.kind == "colour" and not c.source and "pixels" not in c.evidence)]


def pair_changes(source_caption: str, source_label: str, target_caption: str, target_label: str,
                 source_uri: str = "", target_uri: str = "", source_image: bytes | None = None,
                 target_image: bytes | None = None) -> PairChanges:
    """The stated changes of a pair; images (PNG bytes) add the pixel evidence."""
    stats = []
    for img in (source_image, target_image):
        try:
            stats.append(pixel_stats(img) if img is not None else None)
        except Exception:  # noqa: BLE001 - an undecodable image only means no pixel evidence
            stats.append(None)
    return metadata_pair_changes((source_caption, source_label, source_uri),
                                 (target_caption, target_label, target_uri), stats[0], stats[1])


def metadata_pair_changes(source: tuple[str, str, str], target: tuple[str, str, str],
                          source_pixels: PixelStats | None = None,
                          target_pixels: PixelStats | None = None) -> PairChanges:
    """As `pair_changes`, from (caption, label, uri) per side and precomputed pixel statistics."""
    s = read_side(*source)
    t = read_side(*target)
    source_label, target_label = source[1], target[1]
    changes, shared = metadata_changes(s, t)
    px = PixelEvidence()
    if source_pixels is not None and target_pixels is not None:
        px = compare(source_pixels, target_pixels)
        changes = merge_pixels(changes, px, s, t)
    changes = _confirmed(changes)
    # titles that share no word relate the pictures only through what the pixels can tell apart from
    # a look-alike: a mirrored / rotated copy or the same parts recoloured. A matching outline alone
    # (a circle, a card-sized rectangle) joins a smiley to an icon and a card back to a dot pattern.
    pixel_related = px.same_shape and bool(px.transform or (px.colour_from and px.colour_to))
    related = bool(shared) or pixel_related or not (_content(s) or _content(t))
    if not related:  # different things that happen to differ in an attribute word: no stated change
        changes = []
    kept = list(shared)
    if px.same_shape and not any(c.kind in ("swap", "add", "remove") for c in changes):
        kept.append("the same shape")
    subject = " ".join(shared[:3])
    if not subject:
        label = parse_caption("", target_label).leaf
        src_label = parse_caption("", source_label).leaf
        subject = label if label and label == src_label and px.same_shape else ""
    icon = all("icon" in words(parse_caption(c, "").title) for c in (source[0], target[0]))
    for c in changes:  # "a network receive icon": an icon's name is no thing on its own
        if icon and c.target_name:
            c.source_name, c.target_name = f"{c.source_name} icon", f"{c.target_name} icon"
    return PairChanges(subject, changes, kept, icon)


# -- the note ---------------------------------------------------------------------------------------
_TRANSFORM_TEXT = {"mirror": "mirrored left to right", "flip_vertical": "flipped upside down",
                   "rotate_90": "rotated a quarter turn", "rotate_180": "turned half a turn",
                   "rotate_270": "rotated a quarter turn the other way"}


def _side_phrase(subject: str, changes: list[Change], side: str) -> str:
    thing = subject or "it"
    adjs, after = [], []
    for c in changes:
        v = c.source if side == "source" else c.target
        if c.kind in ("colour", "size") and v:
            adjs.append(v)
        elif c.kind == "to_black_and_white":
            after.append("in black and white" if side == "target" else "in colour")
        elif c.kind == "to_colour":
            after.append("in colour" + (f" (mostly {c.target})" if c.target != "colour" else "")
                         if side == "target" else "in black and white")
        elif c.kind == "direction" and v:
            after.append(f"pointing {v}")
        elif c.kind == "state" and v:
            after.append(f"{v}")
        elif c.kind == "number" and v:
            after.append(f"with the number {v}")
        elif c.kind == "transform":
            after.append(_TRANSFORM_TEXT[c.target] if side == "target" else "in its original orientation")
        elif c.kind == "swap" and v:
            after.append(f"with {v}")
        elif c.kind == "add" and side == "target":
            after.append(f"with {c.target}")
        elif c.kind == "remove" and side == "source":
            after.append(f"with {c.source}")
    if thing == "it":
        head = f"one in {' and '.join(adjs)}" if adjs else "it"
    else:
        head = " ".join([*adjs, thing])
    return head + (" " + ", ".join(after) if after else "")


def change_sentence(c: Change) -> str:
    if c.kind == "to_black_and_white":
        return "colour to black and white"
    if c.kind == "to_colour":
        return "black and white to colour" + (f" (mostly {c.target})" if c.target != "colour" else "")
    if c.kind == "transform":
        return f"the target is {_TRANSFORM_TEXT[c.target]}"
    if c.kind == "add":
        return f"the target adds {c.target}"
    if c.kind == "remove":
        return f"the target drops {c.source}"
    what = {"colour": "colour", "to_black_and_white": "colour", "to_colour": "colour", "direction": "direction",
            "state": "state", "size": "size", "number": "number", "swap": "object"}[c.kind]
    return f"{what} {c.source or 'unnamed'} to {c.target}"


def describe(p: PairChanges) -> str:
    if not p.changes:
        return ""
    first = f"Both images show {p.subject}" if p.subject else "Both images show the same kind of thing"
    src = _side_phrase(p.subject, p.changes, "source")
    tgt = _side_phrase(p.subject, p.changes, "target")
    evidence = sorted({e for c in p.changes for e in c.evidence})
    return (f"{first}. However, the source image shows {src}, whereas the target image shows {tgt}. "
            f"Change: {'; '.join(change_sentence(c) for c in p.changes)} (from the {_join(evidence)}).")


# -- instructions -----------------------------------------------------------------------------------
# Wordings people use in composed-retrieval requests ("same but green", "make the car red", "change
# the color to green", "a black and white version", "show it pointing left", "with two of them",
# "without the background"). Placeholders: {t} the target's value, {s} the source's, {o} the object,
# {at} "a green"/"an orange", {more} "bigger"/"smaller", {n} the target's number as a word. A wording
# that needs {s} or {o} is used only when the pair has one. Both spellings of colour appear: people
# write both.
_WORDINGS: dict[str, list[str]] = {
    "colour": [
        "Make it {t}.", "Make the {o} {t}.", "Same but {t}.", "Same {o} but {t}.", "The same {o}, but {t}.",
        "Change the colour to {t}.", "Change the color to {t}.", "Change it to {t}.", "Show it in {t}.",
        "In {t}.", "In {t} instead.", "{At} one.", "The {t} version.", "Now in {t}.", "I want {at} {o}.",
        "I want it in {t}.", "Recolour it {t}.", "Recolor it {t}.", "Colour it {t}.", "Paint it {t}.",
        "Turn it {t}.", "Should be {t}.", "Is {t}.", "Is {t} in color.", "{At} {o} instead.",
        "Show {at} {o}.", "Same {o} in {t}.", "{T} {o}.", "Same shape, {t} colour.", "Give it {at} color.",
        "{T} instead of {s}.", "{T}, not {s}.", "Change {s} to {t}.", "Change the {s} to {t}.",
        "Replace the {s} with {t}.", "Swap {s} for {t}.", "From {s} to {t}.", "Make the {o} {t} instead of {s}.",
        "{T} rather than {s}.", "Same {o}, {t} instead of {s}.",
    ],
    "to_black_and_white": [
        "Make it black and white.", "Black and white.", "A black and white version.", "In black and white.",
        "The same {o} in black and white.", "Same but black and white.", "Without colour.", "Without color.",
        "Remove the colour.", "Take out the colour.", "Make it greyscale.", "Make it grayscale.",
        "Show it in greyscale.", "A monochrome version.", "Same {o}, no colour.", "A black and white {o}.",
        "Make the {o} black and white.", "Drop the colors.", "Black and white instead of {s}.",
        "Same {o} without the {s}.", "Just the outline, no colour.", "Convert it to black and white.",
    ],
    "to_colour": [
        "Add colour.", "Add color to it.", "In colour.", "A coloured version.", "Make it colourful.",
        "Colour it in.", "Same {o} but in colour.", "Fill it with colour.", "The colour version.",
        "Make it colorful.", "A colored {o}.", "Same but in color.", "Show it in colour.",
        "Colour it mostly {t}.", "Make it {t}.", "A {t} version.", "Same {o}, coloured {t}.", "Color it {t}.",
    ],
    "direction": [
        "Make it point {t}.", "Show it pointing {t}.", "Pointing {t}.", "Facing {t}.", "Point it {t}.",
        "Turn it to face {t}.", "Same {o} pointing {t}.", "The {o} facing {t}.", "Make the {o} point {t}.",
        "Going {t}.", "Have it face {t}.", "Should point {t}.", "Same but pointing {t}.", "Now facing {t}.",
        "{T} instead of {s}.", "Pointing {t}, not {s}.", "Change the direction to {t}.",
        "Change it from {s} to {t}.", "Facing {t} instead of {s}.",
    ],
    "state": [
        "Make it {t}.", "Same {o}, but {t}.", "Show it {t}.", "Now {t}.", "The {t} one.", "Make the {o} {t}.",
        "I want it {t}.", "{At} {o}.", "Should be {t}.", "Change it to {t}.", "Same but {t}.",
        "The {t} version.", "{T} instead of {s}.", "{T}, not {s}.", "Same {o}, {t} instead of {s}.",
        "From {s} to {t}.",
    ],
    "size": [
        "Make it {more}.", "{More}.", "Make the {o} {more}.", "{At} {o}.", "Same but {more}.",
        "Show {at} version.", "The same {o}, only {t}.", "A {more} {o}.", "{T} instead of {s}.",
        "Same {o}, {more}.",
    ],
    "number": [
        "With {n} of them.", "Make it {n}.", "{N} instead of {s}.", "Change the number to {n}.",
        "Show {n}.", "The same, but {n}.", "{N} of them instead.", "Same but with {n}.", "Change {s} to {n}.",
    ],
    "swap": [
        "Make it {t} instead of {s}.", "The same, but {t} instead of {s}.", "Change {s} to {t}.",
        "Show {t} in place of {s}.", "{T}, not {s}.", "Replace the {s} with {t}.", "Swap the {s} for {t}.",
        "{T} instead.", "Same but {t}.", "I want {t} instead of {s}.", "{T} rather than {s}.",
        "Change it to {t}.", "Same thing, but {t}.",
        # the whole thing named, with its article (the bare word alone reads as a noun or an adjective)
        "{Atn} instead.", "Make it {atn}.", "Show {atn} instead.", "{Atn} instead of {asn}.", "I want {atn}.",
        "Change it to {atn}.", "Replace it with {atn}.", "Turn the {sn} into {atn}.", "Now {atn}.",
    ],
    "add": [
        "Add {t}.", "With {t}.", "Same but with {t}.", "Now with {t}.", "Include {t}.", "Put {t} in it.",
        "The same {o} with {t}.", "Add {t} to it.", "Show it with {t}.", "Same {o}, plus {t}.",
        "Add {t} to the {o}.", "With {t} added.",
    ],
    "remove": [
        "Remove the {s}.", "Without the {s}.", "Same but without the {s}.", "Take away the {s}.",
        "Leave out the {s}.", "No {s}.", "Get rid of the {s}.", "The {o} without the {s}.", "Delete the {s}.",
        "Take out the {s}.", "Just the {o}, no {s}.", "Same {o} minus the {s}.",
    ],
}
_TRANSFORM_WORDINGS = {
    "mirror": ["Mirror it.", "Flip it horizontally.", "Show it facing the other way.", "The same {o}, mirrored.",
               "Reverse it left to right.", "A mirror image of it.", "Flip it left to right.",
               "Show the mirror image.", "Make it face the opposite way.", "Mirrored.", "Flip the {o} around.",
               "Same {o}, facing the opposite direction."],
    "flip_vertical": ["Flip it upside down.", "Turn it upside down.", "The same {o}, flipped vertically.",
                      "Mirror it top to bottom.", "Upside down.", "Flip it vertically.", "Show the {o} upside down."],
    "rotate_180": ["Turn it upside down.", "Rotate it half a turn.", "The same {o}, rotated 180 degrees.",
                   "Spin it round by 180 degrees.", "Upside down.", "Rotate the {o} 180 degrees."],
    "rotate_90": ["Rotate it a quarter turn.", "Turn it 90 degrees.", "The same {o}, rotated sideways.",
                  "Rotate it by 90 degrees.", "Turn it on its side.", "Rotate the {o} 90 degrees."],
    "rotate_270": ["Rotate it a quarter turn the other way.", "Turn it 90 degrees the other way.",
                   "The same {o}, rotated sideways the other way.", "Rotate it by 270 degrees.",
                   "Rotate it 90 degrees counterclockwise."],
}
_NUMBER_NAMES = {v: k for k, v in NUMBER_WORDS.items()}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _templates(c: Change, obj: str) -> list[str]:
    """The wordings for one change, filled in (those that need a value the pair lacks left out)."""
    return [text for text, _ in _filled(c, obj)]


def _filled(c: Change, obj: str) -> list[tuple[str, bool]]:
    """(wording, whether it names the object or the source value) for one change."""
    t, s = c.target, c.source
    if c.kind == "number":
        t = _NUMBER_NAMES.get(int(t), t) if t.isdigit() else t
        s = _NUMBER_NAMES.get(int(s), s) if s.isdigit() else s
    values = {"t": t, "s": s if c.kind != "to_black_and_white" or s != "colour" else "",
              "o": obj, "at": article(t) if t else "", "n": t,
              "more": {"big": "bigger", "small": "smaller"}.get(t, ""),
              "sn": c.source_name, "asn": _an(c.source_name), "atn": _an(c.target_name)}
    if c.kind == "add" and not t.endswith("s"):
        values["t"] = article(t)  # "with a tree"; a plural stays bare ("with wheels")
    if c.kind == "to_colour" and t == "colour":
        values["t"] = ""  # no one colour dominates: only the wordings without a colour name
    pool = _TRANSFORM_WORDINGS.get(t, []) if c.kind == "transform" else _WORDINGS.get(c.kind, [])
    out: dict[str, bool] = {}
    for w in pool:
        keys = [k.lower() for k in _PLACEHOLDER.findall(w)]
        if any(not values.get(k) for k in keys):
            continue
        text = _PLACEHOLDER.sub(lambda m: values[m.group(1).lower()], w)
        out.setdefault(text[:1].upper() + text[1:], bool({"o", "s", "sn", "asn"} & set(keys)))
    return list(out.items())


_LOOKS = {"colour", "to_black_and_white", "to_colour", "transform", "size"}


def _object(p: PairChanges, kind: str = "colour") -> str:
    """The noun the wordings may name ("make the folder green"), or "" for wordings without one. An
    icon's name is a phrase ("network transmit", "view fullscreen") whose last word is seldom a
    noun: a change of looks names "the icon", any other change no object. A swap names none either:
    the words both titles share are the rest of the name ("baseball" of cap -> bat), not the thing."""
    parts = p.subject.split()
    if not parts or kind == "swap" or parts[-1] not in p.kept:  # a label ("places") is a category, no object
        return ""
    if p.icon and len(parts) > 1:
        return "icon" if kind in _LOOKS else ""
    return parts[-1] if parts[-1] not in _attribute_words() else ""


_JOINERS = (", and {}", " and {}", ", also {}", "; {}")


def instructions(p: PairChanges, rng: random.Random, count: int) -> list[str]:
    """`count` distinct instructions asking for the target's change(s), drawn by `rng` (seed it by the
    pair, so a resumed run writes the same ones)."""
    if not p.changes:
        return []
    filled = _filled(p.changes[0], _object(p, p.changes[0].kind))
    rng.shuffle(filled)
    # alternate wordings that name the object or the old value ("make the car green", "green instead
    # of red") with bare ones ("same but green"): both are how people ask, and the named ones differ
    # from pair to pair
    named, bare = [t for t, n in filled if n], [t for t, n in filled if not n]
    first, second_ = (named, bare) if rng.random() < 0.5 else (bare, named)
    pool = [t for both in zip_longest(first, second_) for t in both if t]
    out = []
    if len(p.changes) > 1:  # one instruction that asks for two changes together
        second = _templates(p.changes[1], _object(p, p.changes[1].kind))
        rng.shuffle(second)
        if pool and second:
            tail = second[0][0].lower() + second[0][1:]
            out.append(pool[0].rstrip(".") + rng.choice(_JOINERS).format(tail))
    for text in pool:
        if len(out) >= count:
            break
        if text not in out:
            out.append(text)
    return out[:max(count, 1)]


def change_words(p: PairChanges) -> set[str]:
    """Words an instruction may use to ask for the change (the target values and the change verbs)."""
    out: set[str] = set()
    for c in p.changes:
        out |= set(words(c.target)) | _VERBS[c.kind]
        if c.kind == "number" and c.target.isdigit() and int(c.target) in _NUMBER_NAMES:
            out.add(_NUMBER_NAMES[int(c.target)])
    return out


_VERBS = {
    "colour": {"colour", "color"},
    "to_black_and_white": {"black", "white", "grey", "gray", "greyscale", "grayscale", "monochrome", "colourless",
                           "colorless", "colour", "color", "colours", "colors", "outline"},
    "to_colour": {"colour", "color", "coloured", "colored", "colours", "colors", "colourful", "colorful"},
    "direction": {"turn", "direction", "facing", "face", "pointing", "point"},
    "transform": {"mirror", "mirrored", "flip", "flipped", "rotate", "rotated", "turn", "upside", "reverse",
                  "opposite", "other", "degrees", "side", "sideways", "counterclockwise"},
    "state": set(), "size": {"bigger", "smaller", "larger", "enlarge", "shrink"}, "number": {"number"},
    "swap": set(),
    "add": {"add", "added", "plus", "include"},
    "remove": {"remove", "without", "take", "leave", "no", "rid", "delete", "minus"},
}
