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
                             size: tuple[int, int] = (40, 48), seed: int = 0, fmt: str = "parquet") -> Path:
    """Write `root/images/*.png` and `root/triplets.{parquet,jsonl}`; return the triplet file."""
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
    if fmt == "parquet":
        path = root / "triplets.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif fmt == "jsonl":
        path = root / "triplets.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        raise ValueError(f"fmt must be parquet or jsonl, not {fmt!r}")
    return path
