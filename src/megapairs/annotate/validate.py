"""Parse generator output into instructions and descriptions, and check them.

Nothing is dropped silently: every rejected candidate is returned with its reason, and a pair whose
output fails becomes a row with `status` and `reason` (see `annotator.py`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from megapairs.annotate.template import FRAME_WORDS, content_words

REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|i cannot|i can'?t|i can not|i'?m unable|i am unable|as an ai"
    r"|unable to (?:help|assist|comply|provide)|cannot (?:help|assist|comply|provide)|i won'?t"
    r"|not able to (?:help|assist|see|view))\b",
    re.IGNORECASE,
)
FORMAT_LEAK = re.compile(r"\b(shared:|source only:|target only:|note:|requests?:|source caption|target caption"
                         r"|relation:|instruction:|source image|target image)|</?[a-z][^>]*>|[{}]", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|query\s*\d*:|request\s*\d*:)\s*", re.IGNORECASE)
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.){3,})"')


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def parse_instruction_list(text: str, primed: bool = False) -> list[str]:
    """Candidates from model output: a JSON list (possibly cut short, possibly after prose), else
    quoted strings, else one candidate per non-header line. `primed`: the prompt ended with `[`."""
    s = (text or "").strip()
    s = re.sub(r"^```(?:json)?|```$", "", s).strip()
    if primed and not s.startswith("["):
        s = "[" + s
    dec = json.JSONDecoder()
    for i in [m.start() for m in re.finditer(r"\[", s)]:
        for tail in ("", "]", '"]'):
            try:
                obj, _ = dec.raw_decode(s[i:] + tail)
            except ValueError:
                continue
            if isinstance(obj, list) and obj and all(isinstance(x, str) for x in obj):
                return [str(x) for x in obj]
    quoted = [json.loads(f'"{q}"') if "\\" in q else q for q in _QUOTED.findall(s)]
    if quoted:
        return quoted
    lines = [_BULLET.sub("", ln).strip() for ln in s.strip("[]").splitlines()]
    return [ln for ln in lines if ln and not ln.endswith(":")]


def clean_instruction(text: str) -> str:
    t = " ".join(str(text).split()).strip().strip("\"'`").strip()
    return _BULLET.sub("", t).strip()


def _copies(instruction: str, description: str) -> bool:
    i, d = norm(instruction), norm(description)
    if not i or not d:
        return False
    words = i.split()
    if i == d or (len(words) >= 6 and i in d):
        return True
    dset = set(d.split())
    return len(words) >= 12 and sum(w in dset for w in words) / len(words) >= 0.9


@dataclass
class InstructionCheck:
    instructions: list[str]
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (candidate, reason)
    ok: bool = False
    reason: str = ""


_CONTRAST = re.compile(r"\b(?:instead of|in place of|in lieu of|rather than|not|no|without|unlike|except"
                       r"|other than|remove|drop|delete|take away|take out|get rid of|leave out|minus)\b",
                       re.IGNORECASE)
# "change/replace/swap X to/with/for Y", "from X to Y": X is what to move away from, Y is asked for
_REPLACE = re.compile(r"\b(?:change|replace|swap|switch|exchange|trade|turn|convert)\b(?P<old>.+?)"
                      r"\b(?:to|into|with|for|by)\b(?P<new>.+)$"
                      r"|\bfrom\b(?P<old2>.+?)\bto\b(?P<new2>.+)$", re.IGNORECASE)


def wanted_and_avoided(text: str) -> tuple[set[str], set[str]]:
    """Content words an instruction asks for, and those it asks to move away from: "X instead of Y",
    "X in place of Y", "X, not Y", "without Y", "change/replace/swap Y to/with/for X", "from Y to X"."""
    m = _REPLACE.search(text)
    if m:
        old, new = (m.group("old"), m.group("new")) if m.group("new") is not None else (m.group("old2"), m.group("new2"))
        wanted, avoided = wanted_and_avoided(new)  # "change the colour to green, not red"
        return wanted | content_words(text[: m.start()]), avoided | content_words(old)
    m = _CONTRAST.search(text)
    if m:
        return content_words(text[: m.start()]), content_words(text[m.end():])
    return content_words(text), set()


def direction_problem(text: str, relation_parts: tuple[str, str], relation: str,
                      on_topic: Iterable[str] = ()) -> str:
    """'' when an instruction points at the target, else why not. `relation_parts` is the note's
    (source part, target part). 'wrong_direction': it asks for something only the source has (outside
    an "instead of …"/"not …"/"without …" clause, or as the X of "change X to Y"), or moves away from
    the target; 'off_topic': it shares no content word with the note nor with `on_topic` (words
    that ask for the stated change: "mirror it" for a note that says "mirrored")."""
    src, tgt = relation_parts
    words = content_words(text) - FRAME_WORDS
    if not words & content_words(relation) and not set(norm(text).split()) & set(on_topic):
        return "off_topic"
    if not (src and tgt):
        return ""
    s_words, t_words = content_words(src), content_words(tgt)
    src_only, tgt_only = s_words - t_words, t_words - s_words
    if not tgt_only:
        return ""
    wanted, avoided = wanted_and_avoided(text)
    if avoided & tgt_only and not wanted & tgt_only:
        return "wrong_direction"
    if wanted & src_only:  # asks for something only the source has
        return "wrong_direction"
    return ""


def is_vague(text: str, relation_parts: tuple[str, str]) -> bool:
    """True when the note names something only the target has and the instruction names none of it
    ("The same kind of flag." for a pair whose target is the flag of Zambia)."""
    src, tgt = relation_parts
    target_only = content_words(tgt) - content_words(src) - FRAME_WORDS
    return bool(target_only) and not content_words(text) & target_only


def check_instructions(candidates: list[str], description: str, *, min_count: int, max_count: int,
                       max_chars: int, min_words: int, max_words: int = 0, demo_texts: Iterable[str] = (),
                       relation_parts: tuple[str, str] | None = None, max_vague: int | None = None,
                       pre_rejected: Iterable[tuple[str, str]] = (),
                       change_words: set[str] | None = None) -> InstructionCheck:
    """Keep the usable candidates, in order. Line mode adds `max_words`, `demo_texts` (instructions
    shown in the prompt: a copy is rejected), `relation_parts` (the direction check), `max_vague`
    (how many instructions may leave out everything the note says only the target has) and
    `pre_rejected` ((text, reason) the caller already turned down, counted like the others).
    `change_words`: when the note states a change, an instruction that uses none of these words (the
    target's values, the change's verbs) restates the pair instead of asking for the change."""
    kept: list[str] = []
    seen: set[str] = set()
    rejected: list[tuple[str, str]] = list(pre_rejected)
    total = len(candidates) + len(rejected)
    demos = {norm(d) for d in demo_texts}
    vague = 0
    for raw in candidates:
        text = clean_instruction(raw)
        key = norm(text)
        if not key:
            why = "empty"
        elif REFUSAL.search(text):
            why = "refusal"
        elif len(text) > max_chars or (max_words and len(key.split()) > max_words):
            why = "too_long"
        elif len(key.split()) < min_words:
            why = "too_short"
        elif FORMAT_LEAK.search(text):
            why = "format_leak"
        elif _copies(text, description):
            why = "copies_description"
        elif key in demos:
            why = "copies_demo"
        elif relation_parts is not None and (why := direction_problem(text, relation_parts, description,
                                                                      change_words or ())):
            pass
        elif change_words is not None and not set(key.split()) & change_words:
            why = "no_change_named"
        elif key in seen:
            why = "duplicate"
        elif len(kept) >= max_count:
            why = "over_max"
        elif max_vague is not None and relation_parts is not None and is_vague(text, relation_parts) \
                and (vague := vague + 1) > max_vague:
            why = "vague"
        else:
            kept.append(text)
            seen.add(key)
            continue
        rejected.append((text, why))
    counts = Counter(w for _, w in rejected if w != "over_max")
    detail = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
    ok = len(kept) >= min_count
    if ok:
        reason = f"rejected {detail}" if detail else ""
    elif not total:
        reason = "no instructions in the output"
    else:
        reason = f"only {len(kept)} valid of {total} (need {min_count})" + (f"; {detail}" if detail else "")
    return InstructionCheck(kept, rejected, ok, reason)


def clean_description(text: str, primed_prefix: str = "") -> str:
    t = " ".join((text or "").split())
    t = re.sub(r"^(?:note|description|answer)\s*:\s*", "", t, flags=re.IGNORECASE)
    if primed_prefix and not t.lower().startswith(primed_prefix.lower()):
        t = f"{primed_prefix} {t}"
    return t.strip()


def check_description(text: str, word_limit: int, min_words: int = 8) -> str:
    """'' when usable, else the reason."""
    words = text.split()
    if not norm(text) or norm(text) in ("shared", "shared source only target only"):
        return "empty"
    if REFUSAL.search(text):
        return "refusal"
    if len(words) < min_words:
        return "too_short"
    if len(words) > 2 * word_limit:
        return "too_long"
    if repeats(text):
        return "repetitive"
    return ""


def repeats(text: str, n: int = 4, times: int = 3) -> bool:
    """True when some run of `n` words occurs `times` times or more (a looping small model)."""
    w = norm(text).split()
    grams = Counter(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    return bool(grams) and max(grams.values()) >= times
