"""Deterministic, model-free text from captions and labels: the `template:` describer and writer.

Captions come in two shapes: plain sentences ("a tabby cat asleep indoors") and OpenClipart titles
with keywords ("Lighthouse: navigation, boat, house. Some free text"). Labels may be paths
("animals/mammals/bears"). `parse_caption` turns either into a title and a keyword list, after
removing junk that carries no meaning for retrieval (`hash(0x…)` tokens, e-mail addresses, URLs,
time stamps). `describe` writes a note in the shape of the MegaPairs template:

    Both images show <shared>. However, the source image shows <source>, whereas the target image
    shows <target>.

and `instructions` writes short requests (<= ~15 words) that describe the target relative to the
source. Both only use what the captions and labels say; neither invents content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_JUNK = [
    re.compile(r"hash\(0x[0-9a-f]+\)", re.IGNORECASE),
    re.compile(r"\b0x[0-9a-f]{4,}\b", re.IGNORECASE),
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail addresses
    re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE),
    re.compile(r"^\s*clip\s?art by [^-:]{2,40}-\s*", re.IGNORECASE),  # "Clipart by Jane Doe - owl" -> "owl"
    # time stamps such as "(Wed Aug 25 23:23:49 2004)"
    re.compile(r"\(?\b(?:mon|tue|wed|thu|fri|sat|sun)\w*\s+\w{3,9}\s+\d{1,2}\s+\d{1,2}:\d{2}(?::\d{2})?\s+\d{4}\)?",
               re.IGNORECASE),
]
_EMPTY_WORDS = {"unsorted", "untitled", "clipart", "clip art", "image", "picture", "svg", "bw", "none", "unknown"}
_FLAG = re.compile(r"\bEmail\s*:?\s*$|\bCreated by\b.*$", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+|[0-9]+")
_MINOR = {"a", "an", "the", "of", "on", "in", "with", "and", "at", "to", "its", "is", "are", "by", "for", "from",
          "this", "that", "it", "one", "some", "very", "as", "or", "but", "same", "kind", "show", "shows",
          "find", "make", "like", "image", "images", "picture", "pictures", "instead", "just", "not", "both"}


# Words of the note's frame ("Both images show related subjects …"): they carry no content, so an
# instruction that only repeats them is not about the pair.
FRAME_WORDS = {"both", "related", "subject", "tagged", "however", "wherea", "source", "target", "design",
               "another", "differ", "different", "only", "how", "look", "thing", "picture", "pictures"}


def strip_junk(text: str) -> str:
    """Caption text without hash tokens, e-mail addresses, URLs and time stamps (whitespace tidied)."""
    t = str(text or "")
    for rx in _JUNK:
        t = rx.sub(" ", t)
    t = re.sub(r"\(\s*\)", " ", t)
    t = re.sub(r":\s*(?:,\s*)+", ": ", t)
    t = re.sub(r"\s*,(?:\s*,)+", ",", t)  # empty keyword slots left behind
    t = re.sub(r"\s+([,.;:])", r"\1", t)
    t = " ".join(t.split())
    return t.strip(" ,;:-")


def stem(word: str) -> str:
    """A crude stem, enough to match "bugs" with "bug", "flies" with "fly", "sailing" with "sail"."""
    w = word.lower()
    if len(w) >= 5 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) >= 4 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    if len(w) >= 6 and w.endswith("ing"):
        return w[:-3]
    return w


def content_words(text: str) -> set[str]:
    """Stemmed words that carry meaning (for overlap checks)."""
    return {stem(w) for w in _WORD.findall(str(text).lower()) if w not in _MINOR and len(w) > 1}


def humanize(token: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", token).split())


@dataclass
class CaptionInfo:
    title: str = ""
    keywords: list[str] = field(default_factory=list)
    label_path: list[str] = field(default_factory=list)

    @property
    def leaf(self) -> str:
        return self.label_path[-1] if self.label_path else ""


def parse_caption(caption: str, label: str = "") -> CaptionInfo:
    text = strip_junk(caption)
    title, keywords = text, []
    head, colon, rest = text.partition(":")
    if colon and 0 < len(head) <= 90 and rest.strip():
        title = head.strip()
        kw_part = re.split(r"\.\s", rest, maxsplit=1)[0]
        keywords = [humanize(k).strip(" .") for k in kw_part.split(",")]
    else:
        title = re.split(r"\.\s", text, maxsplit=1)[0]
    title = _FLAG.sub("", title).strip(" .,;:-")
    if title.lower() in _EMPTY_WORDS:
        title = ""
    seen: set[str] = set()
    kws = []
    for k in keywords:
        key = stem(k)
        if k and k.lower() not in _EMPTY_WORDS and key not in seen and len(k) <= 40:
            seen.add(key)
            kws.append(k)
    path = [humanize(p) for p in str(label or "").split("/") if humanize(p) and humanize(p).lower() not in _EMPTY_WORDS]
    return CaptionInfo(title=" ".join(title.split()[:16]), keywords=kws, label_path=path)


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _plural_like(noun: str) -> bool:
    return noun.lower().endswith("s") and not noun.lower().endswith("ss")


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def shared_subject(src: CaptionInfo, tgt: CaptionInfo) -> str:
    """What both show, from the labels (deepest common path part), else empty."""
    common: list[str] = []
    for a, b in zip(src.label_path, tgt.label_path):
        if stem(a) != stem(b):
            break
        common.append(b)
    if not common:
        return ""
    last = common[-1]
    if _plural_like(last):
        return last
    for up in reversed(common[:-1]):  # "flat theme" under "icons" -> "flat theme icons"
        if _plural_like(up):
            return f"{last} {up}"
    same_leaf = len(common) == len(src.label_path) == len(tgt.label_path)
    return _article(last) if same_leaf else f"{last} pictures"


def _descriptor(me: CaptionInfo, other: CaptionInfo, shared: set[str]) -> list[str]:
    """What sets one side apart: its title, its label leaf and keywords the other side lacks."""
    parts: list[str] = []
    have: set[str] = set(shared)
    if me.title and stem(me.title) != stem(other.title):
        parts.append(me.title)
        have |= content_words(me.title)
    if me.leaf and stem(me.leaf) != stem(other.leaf) and not content_words(me.leaf) <= have:
        parts.append(me.leaf)
        have |= content_words(me.leaf)
    other_kw = {stem(k) for k in other.keywords}
    extra = [k for k in me.keywords if stem(k) not in other_kw and not content_words(k) <= have]
    if extra and parts:  # one keyword in brackets: "Brazil (south america)"
        parts.append(extra[0])
    elif extra:  # nothing else tells the sides apart
        parts.append("a picture tagged " + _join(extra[:3]))
    return parts


def _phrase(parts: list[str]) -> str:
    if not parts:
        return ""
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


@dataclass
class PairText:
    shared: str  # subject both show ("" when unknown)
    shared_tags: list[str]
    source: str  # what only the source shows ("" when nothing tells them apart)
    target: str
    target_short: str  # the target's title or label, for instructions
    same_caption: bool


def pair_text(source_caption: str, source_label: str, target_caption: str, target_label: str) -> PairText | None:
    src, tgt = parse_caption(source_caption, source_label), parse_caption(target_caption, target_label)
    if not (tgt.title or tgt.leaf or tgt.keywords):
        return None
    subject = shared_subject(src, tgt)
    src_kw = {stem(k) for k in src.keywords}
    tags = [k for k in tgt.keywords if stem(k) in src_kw and not content_words(k) <= content_words(subject)]
    shared_words = content_words(subject) | {w for t in tags for w in content_words(t)}
    s_parts, t_parts = _descriptor(src, tgt, shared_words), _descriptor(tgt, src, shared_words)
    same = not s_parts and not t_parts
    if t_parts and not t_parts[0].startswith("a picture tagged "):
        target_short = t_parts[0]
    else:
        target_short = tgt.title or tgt.leaf or _join(tgt.keywords[:2])
    return PairText(subject, tags[:4], _phrase(s_parts), _phrase(t_parts), target_short, same)


def describe(source_caption: str, source_label: str, target_caption: str, target_label: str) -> str:
    """The note in the MegaPairs template shape ('' when the target has no caption or label)."""
    p = pair_text(source_caption, source_label, target_caption, target_label)
    if p is None:
        return ""
    if p.shared:
        first = f"Both images show {p.shared}"
    elif p.shared_tags:
        first = f"Both images are tagged {_join(p.shared_tags[:3])}"
    else:
        first = "Both images show related subjects"
    if p.same_caption:
        name = p.target_short or "this"
        second = (f"However, the source image shows one {name} design, whereas the target image shows "
                  f"another {name} design that differs only in how it looks")
    else:
        second = (f"However, the source image shows {p.source or 'something else'}, whereas the target image "
                  f"shows {p.target or p.target_short}")
    return f"{first}. {second}."


# The target part ends at the note's end or at the `changes:` describer's "Change:" sentence.
_TARGET_PART = re.compile(r"whereas the target image shows\s+(?P<tgt>.*?)(?:\.\s+Change:.*)?\.?$"
                          r"|Target only:\s*(?P<tgt2>.*?)\.?$",
                          re.IGNORECASE | re.DOTALL)
_SOURCE_PART = re.compile(r"the source image shows\s+(?P<src>.*?),\s*whereas"
                          r"|Source only:\s*(?P<src2>.*?)\s*Target only:",
                          re.IGNORECASE | re.DOTALL)


def note_parts(note: str) -> tuple[str, str]:
    """(source part, target part) of a note in either the template or the Shared/Source only/Target
    only shape; empty strings when the note has neither."""
    t = _TARGET_PART.search(note or "")
    s = _SOURCE_PART.search(note or "")
    tgt = (t.group("tgt") or t.group("tgt2") or "") if t else ""
    src = (s.group("src") or s.group("src2") or "") if s else ""
    return src.strip().rstrip("."), tgt.strip().rstrip(".")


def _words(text: str, n: int) -> str:
    w = text.split()
    return " ".join(w[:n]).rstrip(",;:")


def instructions(source_caption: str, source_label: str, target_caption: str, target_label: str,
                 note: str = "") -> list[str]:
    """Three or more short requests for the target, relative to the source (no model)."""
    p = pair_text(source_caption, source_label, target_caption, target_label)
    if p is None:  # no caption: fall back to the note's target part
        _, tgt = note_parts(note)
        if not tgt:
            return []
        t = _words(tgt, 10)
        return [f"Show {t} instead.", f"The same kind of picture, but {t}.", f"Find one where {t}."]
    t = _words(p.target_short, 8)
    what = p.shared.removeprefix("a ").removeprefix("an ") if p.shared else "picture"
    what = _words(what, 4)
    if p.same_caption:
        return [f"Another {t} design like this one.", f"The same {what}, drawn a little differently.",
                f"Find a different version of this {t}."]
    return [f"Show {t} instead.", f"The same kind of {what}, but {t}.", f"Like this one, but {t}."]
