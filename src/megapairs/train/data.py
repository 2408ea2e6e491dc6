"""Training triplets: reading, per-step sampling, collation.

Reading goes through `megapairs.export.reader`, so `--data` may be our export (a dataset folder
with `train/` and `validation/` splits, or one table file) or the released MegaPairs layout, in
Parquet, JSONL, JSON or WebDataset tar, with the column aliases of other loaders. Rows carry
`q_img`, `q_text` (list of instructions), `t_img` and `hns` (`hns[0]` is the query image); image
paths come back absolute (relative ones resolve against `image_root` or the dataset folder).
Rows are converted by columns into one Arrow table (`triplet_cache`); the trainer has rank 0 write
it as a file under the run folder that every rank memory-maps, each rank then drawing its share of
every step's batch (`StepSampler`). Nothing per row lives in process memory but the row-index arrays.

Per step, each query gets: one instruction sampled from its list, its positive, and
`num_hard_negatives` negatives: the query image first (always), then a sample of the other mined
negatives; rows with too few are topped up with other rows' positives (`num_hard_negatives=0`: no
hard negatives at all, the other queries' positives are the only negatives). Every choice is drawn
from `rng(seed, epoch, row)`, so it does not depend on workers, devices or restarts. Items also
carry `ids`, a 64-bit id per candidate image (`image_id`), with which the loss masks copies of a
query's positive among its negatives (a shared target, a sibling row's negative, a top-up).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch

from megapairs.models.common import load_image
from megapairs.train import triplet_cache

log = logging.getLogger("megapairs")


def image_id(ref: Any) -> int:
    """A signed 64-bit id of an image reference (path, bytes or {"path", "bytes"} dict): equal for
    the same reference on every rank and worker, so the loss can mask copies of a positive."""
    if isinstance(ref, dict):
        ref = ref["bytes"] if ref.get("bytes") is not None else ref["path"]
    data = bytes(ref) if isinstance(ref, (bytes, bytearray)) else str(ref).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def candidate_ids(items: list[dict[str, Any]]) -> torch.Tensor:
    """The batch's candidate image ids (B*G,) int64, in the collated candidates' order."""
    return torch.tensor([i for it in items for i in it["ids"]], dtype=torch.long)

COLUMNS = ("q_img", "q_text", "t_img", "hns", "t_caption")  # t_caption: only where the table has it
SCHEMA = triplet_cache.SCHEMA


@dataclass
class TripletTable:
    """Triplets in one Arrow table (absolute image paths): in memory, or memory-mapped from the file
    `load_triplets(cache=...)` wrote, so DataLoader workers and DDP ranks share its pages."""

    table: pa.Table
    source: str

    def __post_init__(self) -> None:
        # Row lookups go straight to a chunk (a mapped file has one chunk per written batch).
        self._names = [c for c in COLUMNS if c in self.table.column_names]
        self._chunks = [self.table.column(c).chunks for c in self._names]
        sizes = [len(ch) for ch in self._chunks[0]]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return self.table.num_rows

    def row(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} triplets")
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        j = i - int(self._starts[k])
        return {c: chunks[k][j].as_py() for c, chunks in zip(self._names, self._chunks)}

    def rows_without_caption(self, rows: np.ndarray) -> int:
        """How many of `rows` have no target caption, null or blank (all of them when the table has
        no such column)."""
        import pyarrow.compute as pc

        rows = np.asarray(rows, dtype=np.int64)
        if "t_caption" not in self.table.column_names:
            return len(rows)
        col = self.table.column("t_caption")
        has = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0), False)
        return int(len(rows) - has.to_numpy(zero_copy_only=False)[rows].sum())


def load_triplets(path: str | Path, image_root: str | Path | None = None, *,
                  split: str | None = "train", cache: str | Path | None = None) -> TripletTable:
    """All triplets of `split` under `path` (a folder or one table file). With `cache` (a file path),
    the main process writes them there as an Arrow file (or reuses it when its sources are unchanged),
    every process waits for it, then memory-maps it: rows cost page cache, not process memory."""
    from megapairs.train.distributed import barrier, info

    src = Path(path).resolve()
    root = Path(image_root).resolve() if image_root else None
    if cache is None:
        table = triplet_cache.build(src, split, root, None)
    else:
        if info().is_main:
            triplet_cache.build(src, split, root, Path(cache))
        barrier()
        table = triplet_cache.open_mapped(Path(cache))
    if table.num_rows == 0:
        raise ValueError(f"no triplets found in {path}" + (f" (split {split!r})" if split else ""))
    return TripletTable(table, str(path))


def validation_split(path: str | Path, image_root: str | Path | None = None, *,
                     cache: str | Path | None = None) -> TripletTable | None:
    """The dataset's own validation split, when it has one distinct from its train split."""
    from megapairs.export.reader import find_tables

    path = Path(path)
    if not path.is_dir():
        return None
    val = find_tables(path, "validation")
    if not val or set(val) == set(find_tables(path, "train")):
        return None
    return load_triplets(path, image_root, split="validation", cache=cache)


# -- dataset --------------------------------------------------------------------------------------
class TripletDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by `(position, epoch)`; position indexes `rows` (a subset of the table)."""

    def __init__(self, data: TripletTable, rows: np.ndarray | None = None, *, num_hard_negatives: int = 4,
                 seed: int = 0, sample_instruction: bool = True, load_images: bool = True,
                 exclude: frozenset = frozenset(), captions: bool = False) -> None:
        self.data = data
        self.rows = np.arange(len(data)) if rows is None else np.asarray(rows)
        self.k = num_hard_negatives
        self.seed = seed
        self.sample_instruction = sample_instruction
        self.load_images = load_images  # False: items carry image references (the feature cache)
        self.exclude = exclude  # image keys (`ref_key`) never used as negatives: the held-out images
        self.captions = captions  # items also carry the target's caption (the caption loss)

    def __len__(self) -> int:
        return len(self.rows)

    def choose(self, pos: int, epoch: int) -> dict[str, Any]:
        """The step's choices for one row, as image references (paths / bytes), not pixels."""
        i = int(self.rows[pos])
        row = self.data.row(i)
        rng = np.random.default_rng([self.seed, epoch, i])
        texts = row["q_text"] if isinstance(row["q_text"], list) else [row["q_text"]]
        if not texts:
            raise ValueError(f"triplet row {i} has no instruction")
        text = texts[int(rng.integers(len(texts)))] if self.sample_instruction else texts[0]
        q_img, t_img = row["q_img"], row["t_img"]
        caption = {"caption": row["t_caption"]} if self.captions else {}  # for the caption term
        if self.k == 0:  # no hard negatives: the other queries' positives are the only negatives
            return {"row": i, "text": text, "query_image": q_img, "candidates": [t_img], "ids": [image_id(t_img)],
                    **caption}
        others = [h for h in (row["hns"] or []) if h != q_img and h != t_img]
        if self.exclude:
            from megapairs.models.feature_cache import ref_key

            others = [h for h in others if ref_key(h) not in self.exclude]
        if len(others) > self.k - 1:
            others = [others[j] for j in sorted(rng.choice(len(others), self.k - 1, replace=False))]
        negatives = [q_img] + others
        while len(negatives) < self.k:  # top up with positives of random other rows
            j = int(self.rows[int(rng.integers(len(self.rows)))])
            if j != i or len(self.rows) == 1:
                negatives.append(self.data.row(j)["t_img"])
        cands = [t_img, *negatives]
        return {"row": i, "text": text, "query_image": q_img, "candidates": cands,
                "ids": [image_id(c) for c in cands], **caption}

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        pos, epoch = key if isinstance(key, tuple) else (key, 0)
        item = self.choose(pos, epoch)
        if not self.load_images:
            return item
        item["query_image"] = load_image(item["query_image"])
        item["candidates"] = [load_image(c) for c in item["candidates"]]
        return item


class StepSampler(torch.utils.data.Sampler):
    """Yields, for steps `start..total-1`, this rank's share of the step's global batch as a list of
    `(position, epoch)`. The order of an epoch is a permutation drawn from `(seed, epoch)`, so the
    data position is a function of the step alone and resuming needs nothing but the step."""

    def __init__(self, n: int, global_batch: int, *, seed: int, start_step: int, total_steps: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world_size} devices")
        if n < global_batch:
            raise ValueError(f"only {n} training triplets, fewer than one batch of {global_batch}")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.start, self.total = start_step, total_steps
        self.rank, self.local = rank, global_batch // world_size
        self.steps_per_epoch = n // global_batch
        self._perm: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 7]).permutation(self.n))
        return self._perm[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, b = divmod(step, self.steps_per_epoch)
        start = b * self.global_batch + self.rank * self.local
        return [(int(p), epoch) for p in self.order(epoch)[start:start + self.local]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.total - self.start)


def subsample_rows(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded `round(fraction * len(rows))` of `rows`, sorted. Nested across fractions for one
    seed (the 25 % rows are among the 50 % rows), which is what a data-scaling curve wants."""
    if fraction >= 1.0:
        return rows
    keep = max(1, int(round(fraction * len(rows))))
    perm = np.random.default_rng([seed, 4321]).permutation(len(rows))
    return np.sort(np.asarray(rows)[perm[:keep]])


@dataclass
class Holdout:
    """In-training held-out rows chosen by export's grouped split: no held-out query or target image
    is a training query or target. `val_images` (held-out queries / targets) are never used as
    training negatives; `train_images` (images training touches) never enter the held-out gallery."""

    train_rows: np.ndarray
    eval_rows: np.ndarray
    val_images: frozenset
    train_images: frozenset  # (those of them the held-out rows also use: all the gallery needs)
    dropped: int = 0  # rows on the border of a carved region (neither split)


def grouped_holdout(data: TripletTable, eval_size: int, seed: int) -> Holdout:
    """Hold out about `eval_size` rows with export's split policy (`assign_split_codes`: connected
    groups of query + target images, carved from the largest group when needed); the rest train.
    Works on the table's columns (image codes), not on a Python object per row."""
    import pyarrow.compute as pc

    from megapairs.export.columns import codes_of, sorted_vocab, take_rows
    from megapairs.export.split import TRAIN, VAL, assign_split_codes

    n = len(data)
    if eval_size <= 0:
        return Holdout(np.arange(n), np.arange(0), frozenset(), frozenset())
    if eval_size >= n:
        raise ValueError(f"eval_size {eval_size} leaves no training rows out of {n}")
    q_col, t_col = data.table.column("q_img"), data.table.column("t_img")
    vocab = sorted_vocab([q_col, t_col])  # image keys are the path strings (`ref_key`)
    qt = np.stack([codes_of(q_col, vocab), codes_of(t_col, vocab)], axis=1).ravel()
    split = assign_split_codes(qt, np.arange(0, 2 * n + 1, 2), len(vocab), lambda c: vocab[c].as_py(),
                               eval_size / n, seed)
    side = np.asarray(split.assignment)
    train_rows, eval_rows = np.flatnonzero(side == TRAIN), np.flatnonzero(side == VAL)
    val_images = frozenset(x for c in ("q_img", "t_img") for x in take_rows(data.table.column(c), eval_rows).to_pylist())
    # Training images among the held-out rows' images (the only ones the gallery asks about).
    held = sorted_vocab([take_rows(data.table.column(c), eval_rows) for c in ("q_img", "t_img")]
                        + [pc.list_flatten(take_rows(data.table.column("hns"), eval_rows))])
    seen = np.zeros(len(held), dtype=bool)
    is_train = side == TRAIN
    for start in range(0, n, 1 << 18):
        part = data.table.slice(start, 1 << 18)
        rows = is_train[start:start + part.num_rows]
        for c in ("q_img", "t_img"):
            codes = codes_of(part.column(c), held)[rows]
            seen[codes[codes >= 0]] = True
        hns = part.column("hns").combine_chunks()
        codes = codes_of(pc.list_flatten(hns), held)
        codes = codes[rows[pc.list_parent_indices(hns).to_numpy()] & (codes >= 0)]
        seen[codes] = True
    train_images = frozenset(x for x in held.filter(pa.array(seen)).to_pylist() if x not in val_images)
    return Holdout(train_rows, eval_rows, val_images, train_images, int(np.sum(side == -1)))


def split_rows(n: int, eval_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold `eval_size` rows out (a seeded choice); the rest train. Both sorted."""
    if eval_size <= 0:
        return np.arange(n), np.arange(0)
    if eval_size >= n:
        raise ValueError(f"eval_size {eval_size} leaves no training rows out of {n}")
    perm = np.random.default_rng([seed, 1234]).permutation(n)
    return np.sort(perm[eval_size:]), np.sort(perm[:eval_size])


class TripletCollator:
    """Items -> {"query": inputs (B, ...), "candidate": inputs (B*G, ...), "group": G,
    "candidate_ids": (B*G,) int64 image ids}, through the retriever's processor. Candidates are
    grouped per query: [positive, negative_1..negative_k]; the loss masks a candidate whose id is
    the query's positive's (a copy of the positive is not a negative)."""

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        group = len(items[0]["candidates"])
        query = self.processor(images=[it["query_image"] for it in items], texts=[it["text"] for it in items],
                               role="query")
        cands = self.processor(images=[c for it in items for c in it["candidates"]], texts=None, role="candidate")
        return {"query": query, "candidate": cands, "group": group, "rows": [it["row"] for it in items],
                "candidate_ids": candidate_ids(items), **caption_queries(self.processor, items)}


def caption_queries(processor, items: list[dict[str, Any]]) -> dict[str, Any]:
    """{"caption": text-only inputs (B, ...) of the items' target captions, "caption_mask": (B,) bool,
    False where an item has none (null or blank: its slot holds an empty text the loss skips)}, when
    the items carry captions (`TripletDataset(captions=True)`) and at least one has one; else {}."""
    if "caption" not in items[0]:
        return {}
    texts = [(it["caption"] or "").strip() for it in items]
    if not any(texts):
        return {}
    return {"caption": processor(images=None, texts=texts, role="query"),
            "caption_mask": torch.tensor([bool(t) for t in texts])}
