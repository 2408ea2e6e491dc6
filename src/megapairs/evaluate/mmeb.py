"""MMEB-V1 eval (TIGER-Lab/MMEB-eval): 36 datasets, Precision@1 per dataset, meta-task, IND/OOD, overall.

Folder layout (a snapshot of the Hub dataset, plus its images.zip unpacked)::

    <data>/<Dataset>/test-*.parquet   (or <data>/<Dataset>.parquet, <data>/<Dataset>[/test].jsonl)
    <data>/eval_images/<img path>     (or <data>/images/, or --image-dir)

Rows: qry_text, qry_img_path (str, "" = none), tgt_text, tgt_img_path (lists; a str text is shared).
Each query ranks only its own candidates, the first of which is the positive (VLM2Vec `eval.py`,
"local" ranking). VLM2Vec's `np.argmax` gives ties to the earlier candidate, i.e. to the positive
(a constant-score model scores 100 %); the headline is that official number (with a warning when ties
touched it), `pessimistic/...` beside it counts a tie as a miss, and `details["tied_rankings"]`
counts the tied queries per dataset. Candidates pair `tgt_text` with `tgt_img_path` as VLM2Vec's
`zip` does: lists of different lengths are cut to the shorter one (logged). The
Phi-3-V image token `<|image_1|>` is removed from texts, since our retrievers take the image
separately. The query text is the task instruction (plus, after its first ": ", the query's own
text): retrievers with an instruction slot (the MLLM) get the instruction there.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from megapairs.evaluate import metrics, templates
from megapairs.evaluate.common import (BenchmarkOutput, DataError, EvalOptions, Item, first_existing, limited,
                                       pick_root)
from megapairs.evaluate.context import Context

NAME = "mmeb"
DATASETS = tuple(d for names in metrics.MMEB_META.values() for d in names)
IMAGE_TOKEN = "<|image_1|>"
FIELDS = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
log = logging.getLogger("megapairs")


def dataset_file(data_dir: Path, name: str) -> Path:
    folder = Path(data_dir) / name
    parquet = sorted(folder.glob("test-*.parquet")) if folder.is_dir() else []
    if parquet:
        return folder  # read as one table
    return first_existing([Path(data_dir) / f"{name}.parquet", folder / "test.parquet",
                           Path(data_dir) / f"{name}.jsonl", folder / "test.jsonl"], f"MMEB dataset {name}")


def load_rows(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        rows = [r for f in sorted(path.glob("test-*.parquet")) for r in pq.read_table(f).to_pylist()]
    elif path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, r in enumerate(rows):
        missing = [f for f in FIELDS if f not in r]
        if missing:
            raise DataError(f"{path}: row {i} lacks field(s) {missing}; is this MMEB-eval?")
    return rows


def clean(text: str | None) -> str:
    return " ".join((text or "").replace(IMAGE_TOKEN, " ").split())


def split_instruction(text: str) -> tuple[str, str]:
    """MMEB query text -> (task instruction, the query's own text). The instruction runs up to and
    including the first ": " ("Represent the given image with the following question: What ...");
    without one, the whole text is the instruction ("Represent the given image for classification")."""
    head, sep, rest = text.partition(": ")
    return (head + ":", rest.strip()) if sep else (text, "")


def candidates(row: dict[str, Any]) -> list[tuple[str, str]]:
    paths = row["tgt_img_path"] if isinstance(row["tgt_img_path"], list) else [row["tgt_img_path"]]
    texts = row["tgt_text"] if isinstance(row["tgt_text"], list) else [row["tgt_text"]] * len(paths)
    if not isinstance(row["tgt_img_path"], list) and len(texts) > 1:
        paths = paths * len(texts)  # one shared image path given as a string
    if len(texts) != len(paths):  # VLM2Vec: zip(row["tgt_text"], row["tgt_img_path"]) keeps the shorter
        log.warning("MMEB row with %d candidate texts but %d candidate images: only the first %d candidates "
                    "are ranked, as VLM2Vec's zip does", len(texts), len(paths), min(len(texts), len(paths)))
    return [(clean(t), p or "") for t, p in zip(texts, paths)]


def selected(data_dir: Path, opts: EvalOptions) -> list[str]:
    if opts.datasets:
        return list(opts.datasets)  # each must exist: dataset_file raises naming the paths tried
    found = [d for d in DATASETS if (Path(data_dir) / d).is_dir() or (Path(data_dir) / f"{d}.parquet").exists()
             or (Path(data_dir) / f"{d}.jsonl").exists()]
    if not found:
        raise DataError(f"no MMEB dataset found under {data_dir} (expected e.g. {Path(data_dir) / DATASETS[0]}/)")
    return found


def _item_maker(root: Path):
    def item(key: str, text: str, img: str, instruction: str | None = None) -> Item:
        if not text and not img and not instruction:
            raise DataError(f"MMEB entry {key!r} has neither text nor image")
        return Item(key, image=(root / img) if img else None, text=text or None, instruction=instruction)
    return item


def query_item(item, key: str, text: str, img: str, per_task_instruction: bool) -> Item:
    """With `per_task_instruction` the task instruction goes to the retriever's instruction slot (when
    it has one; otherwise the retriever sees instruction + text as one string, as before)."""
    if not per_task_instruction:
        return item(key, text, img)
    instruction, rest = split_instruction(text)
    return item(key, rest, img, instruction)


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    tname, template = templates.resolve(NAME, opts.template)
    data_dir = Path(data_dir)
    names = selected(data_dir, opts)
    files = {d: dataset_file(data_dir, d) for d in names}  # check every file first
    roots = [Path(opts.image_dir)] if opts.image_dir else [data_dir / "eval_images", data_dir / "images", data_dir]
    per_ds: dict[str, float] = {}  # ties to the positive, as VLM2Vec's np.argmax does
    pessimistic: dict[str, float] = {}
    tied: dict[str, int] = {}
    per_task_instruction = not opts.instruction  # --instruction overrides the per-task ones
    n_queries = n_cands = 0
    for name, path in files.items():
        rows = limited(load_rows(path), opts)
        if not rows:
            raise DataError(f"MMEB dataset {name} has no rows ({path}); VLM2Vec's accuracy would divide by zero")
        cand_lists = [candidates(r) for r in rows]
        if any(not cl for cl in cand_lists):
            raise DataError(f"MMEB dataset {name}: a row has no candidates (VLM2Vec's np.argmax fails on it)")
        images = (p for r, cl in zip(rows, cand_lists) for p in [r["qry_img_path"], *(c[1] for c in cl)])
        first_img = next((p for p in images if p), None)
        root = pick_root(roots, first_img, f"MMEB {name} images") if first_img else data_dir
        item = _item_maker(root)
        unique = sorted({c for cl in cand_lists for c in cl})
        pos = {c: i for i, c in enumerate(unique)}
        g = ctx.gallery([item(f"{t}\t{p}", t, p) for t, p in unique], f"mmeb-{name}")  # (M, D)
        q_items = [query_item(item, str(i), templates.fill(template, text=clean(r["qry_text"])),
                              r["qry_img_path"] or "", per_task_instruction) for i, r in enumerate(rows)]
        q = ctx.encode(q_items, f"mmeb {name} queries")  # (Q, D)
        scores = [g[[pos[c] for c in cl]] @ q[i] for i, cl in enumerate(cand_lists)]  # (num_candidates,) each
        per_ds[name] = metrics.precision_at_1(scores, 0, ties="official")
        pessimistic[name] = metrics.precision_at_1(scores, 0, ties="pessimistic", keys=cand_lists)
        tied[name] = metrics.tied_rankings(scores, 0, cand_lists)
        if tied[name]:
            log.warning("MMEB %s: %d of %d queries tie the positive with another candidate; as VLM2Vec's np.argmax "
                        "the positive (listed first) wins those ties (pessimistic P@1 = %.2f)", name, tied[name],
                        len(rows), pessimistic[name])
        n_queries, n_cands = n_queries + len(rows), n_cands + len(unique)
    missing = [d for d in DATASETS if d not in per_ds]
    scores_out = {**metrics.mmeb_summary(per_ds),
                  **{f"pessimistic/{k}": v for k, v in metrics.mmeb_summary(pessimistic).items()}}
    return BenchmarkOutput(metrics=scores_out, num_queries=n_queries,
                           gallery_size=f"{n_cands} distinct candidates (per-query candidate lists)",
                           details={"datasets_missing": missing, "complete": not missing, "tied_rankings": tied,
                                    "instructions": "per task (instruction slot)" if per_task_instruction
                                    else "--instruction for every dataset"}, split="test",
                           template=templates.describe(tname, template), reference_policy="keep")
