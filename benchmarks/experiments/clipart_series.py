"""A held-out composed-retrieval test from OpenClipart's own file names, for transfer checks.

OpenClipart ships drawings in series whose file names differ in one attribute word
(`balloon-green-aj.svg` / `balloon-red-aj.svg`, `arrow-up-blue_…` / `arrow-left-blue_…`). Each
ordered pair of a series that differs in exactly one colour or direction word is a composed query:
(query drawing, a short request for the other word, target drawing). The requests use a wording of
their own ("the red version", "facing left"), not the `changes:` writer's templates.

    python benchmarks/experiments/clipart_series.py --out /tmp/heldout

writes OUT/exclude.txt (every drawing of the test, to pass as `ingest.exclude`), OUT/images/ (PNG
renders) and OUT/validation/part-00000.parquet (q_img, q_text, t_img rows, the layout
`megapairs evaluate --benchmark triplets` and `megapairs.followup` read).
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from megapairs.annotate.changes import COLOURS, DIRECTIONS
from megapairs.corpus.images import render_svg

ROOT = Path("/usr/share/openclipart/svg")
WORDING = {"colour": ["the {t} version", "{t} please", "same but {t}"],
           "direction": ["facing {t}", "pointing {t}", "the one going {t}"]}


def series(root: Path) -> dict[tuple[str, str], list[tuple[Path, str, str]]]:
    """(folder, name with one attribute word blanked) -> [(file, kind, word)]."""
    groups: dict[tuple[str, str], list[tuple[Path, str, str]]] = defaultdict(list)
    for f in sorted(root.rglob("*.svg")):
        if f.is_symlink():
            continue
        toks = re.split(r"[-_ ]+", f.stem.lower())
        hits = [(i, "colour" if t in COLOURS else "direction") for i, t in enumerate(toks)
                if t in COLOURS or t in DIRECTIONS]
        if len(hits) != 1:
            continue
        i, kind = hits[0]
        key = " ".join(toks[:i] + ["*"] + toks[i + 1:])
        groups[(str(f.parent.relative_to(root)), key)].append((f, kind, toks[i]))
    return {k: v for k, v in groups.items() if len({w for _, _, w in v}) >= 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", default=str(ROOT))
    args = ap.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "validation").mkdir(exist_ok=True)
    groups = series(Path(args.root))
    rows, files = [], []
    for (folder, key), members in sorted(groups.items()):
        seen_words: set[str] = set()
        members = [m for m in members if not (m[2] in seen_words or seen_words.add(m[2]))]  # one per word
        for f, _, _ in members:
            png = out / "images" / f"{f.stem}.png"
            if not png.exists():
                png.write_bytes(render_svg(f.read_bytes(), 256))
            files.append(str(f))
        for (fa, kind, wa), (fb, _, wb) in itertools.permutations(members, 2):
            texts = [w.format(t=wb) for w in WORDING[kind]]
            rows.append({"q_img": f"images/{fa.stem}.png", "q_text": texts, "t_img": f"images/{fb.stem}.png",
                         "kind": kind, "series": f"{folder}/{key}"})
    (out / "exclude.txt").write_text("\n".join(sorted(set(files))) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), out / "validation" / "part-00000.parquet")
    kinds = defaultdict(int)
    for r in rows:
        kinds[r["kind"]] += 1
    print(f"{len(groups)} series, {len(set(files))} drawings, {len(rows)} queries {dict(kinds)} -> {out}")


if __name__ == "__main__":
    main()
