"""Small synthetic triplet sets in the MegaPairs layout (tests, benchmarks, dry runs).

Images are random-noise PNGs; each row names a query image, three instructions, a target and
hard negatives with `hns[0]` = the query image, exactly like the released data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def write_synthetic_triplets(root: str | Path, *, n_images: int = 24, n_rows: int = 16, n_negatives: int = 5,
                             size: tuple[int, int] = (40, 48), seed: int = 0, fmt: str = "parquet",
                             captions: bool = False) -> Path:
    """Write `root/images/*.png` and `root/triplets.{parquet,jsonl}`; return the triplet file. With
    `captions`, rows also carry `t_caption` ("picture <n>" of the target image n), as our export does."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n_images):
        pixels = (rng.random((size[0], size[1], 3)) * 255).astype(np.uint8)
        name = f"images/{i:04d}.png"
        Image.fromarray(pixels).save(root / name)
        names.append(name)
    words = ["red", "dark", "at night", "with a dog", "from above", "in winter", "smaller", "older"]
    rows = []
    for _ in range(n_rows):
        q, t, *negs = rng.choice(n_images, 2 + n_negatives - 1, replace=False)
        texts = [f"make it {w}" for w in rng.choice(words, 3, replace=False)]
        rows.append({"q_img": names[q], "q_text": texts, "t_img": names[t],
                     "hns": [names[q]] + [names[j] for j in negs]})
        if captions:
            rows[-1]["t_caption"] = f"picture {int(t)}"
    if fmt == "parquet":
        path = root / "triplets.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "jsonl":
        path = root / "triplets.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        raise ValueError(f"fmt must be parquet or jsonl, not {fmt!r}")
    return path


# -- a composed-retrieval task whose instructions name an edit ---------------------------------------
EDIT_COLOURS = {"red": (215, 35, 35), "green": (35, 165, 50), "blue": (40, 70, 215), "yellow": (235, 205, 30)}
# Asymmetric outlines (unit square, facing right) so that a mirrored copy differs from the original.
EDIT_SHAPES = {
    "arrow": [(0.1, 0.4), (0.6, 0.4), (0.6, 0.2), (0.9, 0.5), (0.6, 0.8), (0.6, 0.6), (0.1, 0.6)],
    "flag": [(0.2, 0.1), (0.3, 0.1), (0.3, 0.3), (0.85, 0.45), (0.3, 0.6), (0.3, 0.9), (0.2, 0.9)],
    "boot": [(0.25, 0.1), (0.5, 0.1), (0.5, 0.6), (0.9, 0.7), (0.9, 0.9), (0.25, 0.9)],
    "wedge": [(0.1, 0.85), (0.9, 0.85), (0.1, 0.15)],
    "hook": [(0.2, 0.1), (0.4, 0.1), (0.4, 0.7), (0.7, 0.7), (0.7, 0.5), (0.9, 0.5), (0.9, 0.9), (0.2, 0.9)],
}
RECOLOUR = ("make it {c}", "turn it {c}", "the same, but {c}", "change the colour to {c}")
MIRROR = ("mirror it", "flip it horizontally", "make it face the other way")


def _edit_variants(rng: np.random.Generator, size: int) -> dict[tuple[str, bool], Image.Image]:
    """One random drawing in every colour, facing either way: {(colour, mirrored): image}."""
    from PIL import ImageDraw, ImageOps

    shape = EDIT_SHAPES[list(EDIT_SHAPES)[int(rng.integers(len(EDIT_SHAPES)))]]
    scale = rng.uniform(0.55, 0.9) * size
    ox, oy = rng.uniform(0, size - scale, 2)
    points = [(ox + x * scale, oy + y * scale) for x, y in shape]
    bg = tuple(int(v) for v in rng.integers(215, 256, 3))
    out = {}
    for colour, rgb in EDIT_COLOURS.items():
        img = Image.new("RGB", (size, size), bg)
        ImageDraw.Draw(img).polygon(points, fill=rgb)
        out[(colour, False)], out[(colour, True)] = img, ImageOps.mirror(img)
    return out


def write_edit_triplets(root: str | Path, *, n_train: int = 60, n_eval: int = 20, size: int = 96,
                        seed: int = 0) -> tuple[Path, list[dict]]:
    """A task where the target is the query with an edit the instruction names: recoloured
    ("make it red") or mirrored ("mirror it"). Each drawing (random outline, size, place and
    background) comes in 4 colours x 2 directions; training rows use the first `n_train`
    drawings, with the drawing's other variants as hard negatives. Returns the training triplet
    file and the held-out queries `{"q_img", "text", "t_img", "edit", "gallery"}` over the other
    `n_eval` drawings (`gallery`: every variant of every held-out drawing)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    drawings = []
    for d in range(n_train + n_eval):
        paths = {}
        for (colour, mirrored), img in _edit_variants(rng, size).items():
            path = root / "images" / f"{d:04d}-{colour}-{'m' if mirrored else 'o'}.png"
            img.save(path)
            paths[(colour, mirrored)] = str(path)
        drawings.append(paths)

    def triplet(paths: dict) -> dict:
        colour = list(EDIT_COLOURS)[int(rng.integers(len(EDIT_COLOURS)))]
        mirrored = bool(rng.integers(2))
        if rng.random() < 0.5:
            new = [c for c in EDIT_COLOURS if c != colour][int(rng.integers(len(EDIT_COLOURS) - 1))]
            texts, edit, target = [t.format(c=new) for t in RECOLOUR], "recolour", (new, mirrored)
        else:
            texts, edit, target = list(MIRROR), "mirror", (colour, not mirrored)
        query = paths[(colour, mirrored)]
        others = [p for k, p in paths.items() if k not in ((colour, mirrored), target)]
        negatives = [others[j] for j in rng.choice(len(others), 3, replace=False)]
        return {"q_img": query, "q_text": texts, "t_img": paths[target], "hns": [query, *negatives], "edit": edit}

    rows = [triplet(drawings[d]) for d in range(n_train) for _ in range(8)]
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps({k: r[k] for k in ("q_img", "q_text", "t_img", "hns")}) + "\n" for r in rows))
    gallery = [p for paths in drawings[n_train:] for p in paths.values()]
    held = []
    for d in range(n_train, n_train + n_eval):
        for _ in range(2):
            r = triplet(drawings[d])
            held.append({"q_img": r["q_img"], "text": r["q_text"][int(rng.integers(len(r["q_text"])))],
                         "t_img": r["t_img"], "edit": r["edit"], "gallery": gallery})
    return path, held
