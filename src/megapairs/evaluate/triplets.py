"""Held-out evaluation on our own triplets: the one evaluator (`megapairs evaluate --benchmark
triplets` and the trainer's in-training check both use `score_triplets`).

Input: a Parquet/JSONL file, or a folder of them (e.g. an export artifact with part-*.parquet), with
columns q_img (path), q_text (list of instructions, or one string), t_img (path) and optionally hns
(hard-negative paths). The names query_image / query_texts / target_image / hard_negative_images are
accepted too. Relative paths resolve against --image-dir, else the data folder (or its images/).

Gallery = every distinct image of the set (q_img, t_img and hns). Each held-out row (with
`instructions="all"`: each row x instruction) is one *unit*, scored in three modes side by side:
composed (q_img + instruction), image (q_img alone), text (instruction alone). A unit's answers are
the same in every mode: the targets of the units that pose the same composed query (query image +
instruction), usually just its own row's target. Identical queries are embedded once, but an
image-only query is not credited with the target of another row that merely starts from the same
image (that would flatter the image-only baseline). Every metric is a mean over units, in percent:
Recall@1/5/10 and mAP@{5,10,25,50} (CIRCO's AP). Since all modes score the same units, a seeded
paired bootstrap over units gives 95 % intervals of composed - image and composed - text
(`details["bootstrap"]`; `megapairs.evaluate.bootstrap.compare_results` does model B - model A).

Ties: exact scores, ranked pessimistically: among equal scores the non-targets come first (then
gallery order), so a constant-score model gets no hit it did not earn. Reference policy: keep by
default (the query image stays in the gallery as the hardest distractor, as in MegaPairs
training); remove deletes the unit's query image from its ranking in every mode, text-only
included, as CIRCO/CIRR evaluations do (so the three modes of a unit rank the same gallery).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Sequence

import numpy as np
import pyarrow.parquet as pq

from megapairs.configbase import ConfigError
from megapairs.evaluate import metrics, templates
from megapairs.evaluate.bootstrap import paired_bootstrap
from megapairs.evaluate.common import (QUERY_MODES, BenchmarkOutput, DataError, EvalOptions, Item, limited,
                                       pick_root, policy_or, require)

if TYPE_CHECKING:  # the trainer imports this module; keep it free of FAISS / the runner
    from megapairs.evaluate.context import Context

NAME = "triplets"
DEFAULT_POLICY = "keep"
RECALL_KS = (1, 5, 10)
MAP_KS = (5, 10, 25, 50)
ALIASES = {"query_image": "q_img", "query_texts": "q_text", "target_image": "t_img", "hard_negative_images": "hns"}


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".json":
        return list(json.loads(path.read_text()))
    raise DataError(f"triplets file {path} is not .parquet, .jsonl or .json")


def run_dataset(data: Path) -> Path:
    """A run folder stands for its exported dataset (as in `megapairs train --data RUN`)."""
    if data.is_dir() and not (data / "validation").is_dir() and (data / "dataset" / "validation").is_dir():
        return data / "dataset"
    return data


def load_rows(data: Path) -> list[dict[str, Any]]:
    require(data, "validation triplets")
    data = run_dataset(data)
    if data.is_dir() and (data / "validation").is_dir():  # an exported dataset folder
        data = data / "validation"
    elif data.is_dir() and (data / "jsonl" / "validation").is_dir():  # an export written as JSONL only
        data = data / "jsonl" / "validation"
    # The export writes the same rows as Parquet and JSONL: read one format, Parquet first.
    files = [data] if data.is_file() else (sorted(data.glob("*.parquet")) or sorted(data.glob("*.jsonl")))
    if not files:
        raise DataError(f"no .parquet or .jsonl triplet files in {data}")
    rows = []
    for f in files:
        for r in _read(f):
            r = {ALIASES.get(k, k): v for k, v in r.items()}
            missing = [c for c in ("q_img", "q_text", "t_img") if c not in r]
            if missing:
                raise DataError(f"{f}: a row lacks column(s) {missing} (need q_img, q_text, t_img)")
            texts = [r["q_text"]] if isinstance(r["q_text"], str) else list(r["q_text"])
            if not texts:
                raise DataError(f"{f}: a row has no instruction in q_text")
            rows.append({"q_img": str(r["q_img"]), "q_text": texts, "t_img": str(r["t_img"]),
                         "hns": [str(h) for h in (r.get("hns") or [])]})
    return rows


def build_units(rows: Sequence[dict], instructions: str) -> list[tuple[int, str]]:
    """The scored units: (row index, instruction), the first instruction per row or all of them."""
    return [(i, t) for i, r in enumerate(rows) for t in (r["q_text"][:1] if instructions == "first" else r["q_text"])]


def build_queries(rows: Sequence[dict], mode: str, instructions: str = "first") -> list[dict]:
    """Distinct queries of one mode over `build_units(rows, instructions)` (see `mode_queries`)."""
    return mode_queries(rows, build_units(rows, instructions), mode)[0]


def query_key(mode: str, image: str, text: str) -> tuple:
    """What makes two units the same query in one mode (they are embedded once)."""
    return {"composed": (image, text), "image": (image,), "text": (text,)}[mode]


def mode_queries(rows: Sequence[dict], units: Sequence[tuple[int, str]], mode: str) -> tuple[list[dict], np.ndarray]:
    """Distinct queries of one mode ({"image", "text"}; the unused part is still filled in) and, per
    unit, the index of its query. Only the embedding is shared: each unit keeps its own answers."""
    index: dict[tuple, int] = {}
    queries: list[dict] = []
    unit_query = np.empty(len(units), dtype=np.int64)
    for u, (i, text) in enumerate(units):
        key = query_key(mode, rows[i]["q_img"], text)
        if key not in index:
            index[key] = len(queries)
            queries.append({"image": rows[i]["q_img"], "text": text})
        unit_query[u] = index[key]
    return queries, unit_query


def unit_answers(rows: Sequence[dict], units: Sequence[tuple[int, str]]) -> tuple[list[dict], np.ndarray]:
    """The answer set of every unit, the same in every mode: the targets of all units that pose the
    same composed query (query image + instruction), so an identical query is never marked wrong for
    finding the other row's target. Image-only and text-only queries are judged against this set, not
    against every target of rows that merely share their image or their text.
    Returns (distinct composed questions {"image", "text", "targets"}, per unit its question index)."""
    questions, unit_question = mode_queries(rows, units, "composed")
    for q in questions:
        q["targets"] = set()
    for u, (i, _) in enumerate(units):
        questions[unit_question[u]]["targets"].add(rows[i]["t_img"])
    return questions, unit_question


def rank_pessimistic(q: np.ndarray, g: np.ndarray, targets: Sequence[set[int]], exclude: Sequence[int | None],
                     k: int, chunk: int = 512) -> list[np.ndarray]:
    """Top-k gallery indices per query (q (Q, D), g (N, D)), exact scores; equal scores put non-targets
    first, then gallery order. `exclude[j]` is left out of row j's ranking."""
    n = g.shape[0]
    out: list[np.ndarray] = []
    for start in range(0, q.shape[0], chunk):
        scores = q[start:start + chunk] @ g.T  # (c, N)
        for j, s in enumerate(scores):
            s = s.astype(np.float64)
            skip = exclude[start + j]
            if skip is not None:
                s[skip] = -np.inf
            kk = min(k, n - (skip is not None))
            if kk <= 0:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            thr = np.partition(s, n - kk)[n - kk]  # the kk-th largest score
            cand = np.flatnonzero(s >= thr)
            if skip is not None:
                cand = cand[cand != skip]
            is_target = np.isin(cand, list(targets[start + j]))
            order = np.lexsort((cand, is_target, -s[cand]))  # score desc, non-target first, index asc
            out.append(cand[order][:kk].astype(np.int64))
    return out


def unit_values(rankings: Sequence[Sequence[Hashable]], targets: Sequence[set]) -> dict[str, np.ndarray]:
    """Per ranking, every metric in percent: R@k is 0 or 100, mAP@k is 100 x AP@k (CIRCO's AP)."""
    out: dict[str, np.ndarray] = {}
    for k in RECALL_KS:
        out[f"R@{k}"] = np.array([100.0 * bool(t & set(r[:k])) for r, t in zip(rankings, targets)])
    for k in MAP_KS:
        out[f"mAP@{k}"] = 100.0 * metrics.per_query_ap(rankings, [sorted(t) for t in targets], k)
    return out


QueryEncoder = Callable[[str, list[dict]], np.ndarray]  # (mode, queries) -> (len(queries), D)


def score_triplets(rows: Sequence[dict], gallery_keys: Sequence[Hashable], gallery: np.ndarray,
                   encode_queries: QueryEncoder, *, modes: Sequence[str] = QUERY_MODES, instructions: str = "first",
                   policy: str = DEFAULT_POLICY, bootstrap: int = 1000, seed: int = 0,
                   topk: int = 50) -> tuple[dict[str, float], dict[str, Any]]:
    """The shared core. `rows`: {"q_img", "q_text" (list), "t_img"} with image *keys* (hashable) that
    appear in `gallery_keys`; `gallery` (N, D) holds their embeddings in that order. Returns
    (metrics "<mode>/<metric>" in percent, details with per-unit values and the bootstrap intervals)."""
    pos = {key: i for i, key in enumerate(gallery_keys)}
    units = build_units(rows, instructions)
    questions, unit_question = unit_answers(rows, units)
    first_unit = np.empty(len(questions), dtype=np.int64)
    first_unit[unit_question[::-1]] = np.arange(len(units))[::-1]  # a unit of each question
    targets = [{pos[t] for t in q["targets"]} for q in questions]
    # "remove": the unit's query image leaves its ranking in every mode (text-only too), so the three
    # modes of a unit rank the same gallery and their paired difference measures the query alone.
    exclude = [pos[q["image"]] if policy == "remove" else None for q in questions]
    values: dict[str, dict[str, np.ndarray]] = {}
    out: dict[str, float] = {}
    details: dict[str, Any] = {"units": [[i, t] for i, t in units], "tie_policy": "pessimistic",
                               "reference_policy": policy, "answers": "per composed query, in every mode"}
    for mode in modes:
        queries, unit_query = mode_queries(rows, units, mode)
        q = encode_queries(mode, queries)  # (Q, D)
        # one ranking per composed question: its mode query, its answers, its excluded image
        rows_of_q = q[unit_query[first_unit]]  # (C, D)
        ranked = rank_pessimistic(rows_of_q, gallery, targets, exclude, max(topk, max(MAP_KS)))
        rankings = [[gallery_keys[i] for i in r] for r in ranked]
        per_question = unit_values(rankings, [q["targets"] for q in questions])
        values[mode] = {name: v[unit_question] for name, v in per_question.items()}
        out.update({f"{mode}/{name}": float(v.mean()) if len(v) else float("nan") for name, v in values[mode].items()})
        details[f"{mode}_queries"] = len(queries)
    details["per_query"] = {m: {name: v.tolist() for name, v in vs.items()} for m, vs in values.items()}
    if "composed" in values and bootstrap > 0:
        details["bootstrap"] = {
            f"composed-{other}": {name: paired_bootstrap(values[other][name], values["composed"][name],
                                                         resamples=bootstrap, seed=seed)
                                  for name in values["composed"]}
            for other in ("image", "text") if other in values}
    return out, details


def run(data_dir: Path, ctx: Context) -> BenchmarkOutput:
    opts: EvalOptions = ctx.options
    policy = policy_or(DEFAULT_POLICY, opts)
    if policy == "min":
        raise ConfigError("triplets rank ties pessimistically; --reference-policy is keep or remove here")
    tname, template = templates.resolve(NAME, opts.template)
    data = run_dataset(Path(data_dir))
    rows = limited(load_rows(data), opts)
    folder = data if data.is_dir() else data.parent
    roots = [Path(opts.image_dir)] if opts.image_dir else [folder, folder / "images", folder.parent]
    root = pick_root(roots, rows[0]["q_img"], "triplet images") if rows else folder
    names = sorted({p for r in rows for p in [r["q_img"], r["t_img"], *r["hns"]]})
    g = ctx.gallery([Item(n, image=root / n) for n in names], "triplets")  # (N, D)

    def encode(mode: str, queries: list[dict]) -> np.ndarray:
        items = [Item(str(i), image=root / x["image"] if mode != "text" else None,
                      text=templates.fill(template, instruction=x["text"]) if mode != "image" else None)
                 for i, x in enumerate(queries)]
        return ctx.encode(items, f"triplets {mode} queries")  # (Q, D)

    scores, details = score_triplets(rows, names, g, encode, modes=opts.query_modes, instructions=opts.instructions,
                                     policy=policy, bootstrap=opts.bootstrap, seed=opts.bootstrap_seed,
                                     topk=opts.topk)
    return BenchmarkOutput(metrics=scores, num_queries=len(details["units"]), gallery_size=len(names),
                           split=opts.split or "val", template=templates.describe(tname, template),
                           reference_policy=policy, details=details)
