"""After export: train a retriever on the synthesised triplets, evaluate it against its zero-shot
start on the held-out split, and build a search index (the `followup` config section).

What comes out, under the run folder:
  retriever/         the trained checkpoint (`megapairs train` layout; a rerun resumes or reuses it)
  results/           summary.json: recall per model and query kind, intervals, timings
  index/             a gallery index of the dataset's images for `megapairs serve`
  _cache/features/   the offline image tower's outputs, shared by the three steps

The evaluation is on the dataset's validation split, whose images training never saw (the export
splits by image groups). Every model is scored with composed (image + instruction), image-only and
text-only queries, the query's own image removed from its ranking (as CIRCO and CIRR do), and the
summary gives paired bootstrap intervals: trained composed minus trained image-only, and trained
composed minus zero-shot composed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from megapairs.configbase import ConfigBase, ConfigError

log = logging.getLogger("megapairs")

MODES = ("composed", "image", "text")
RECALL_KS = (1, 5, 10)


@dataclasses.dataclass
class FollowupConfig(ConfigBase):
    train: bool = False
    evaluate: bool = False
    index: bool = False
    model: str = "offline:default"  # the retriever to start from (and the zero-shot baseline)
    train_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # TrainConfig fields
    bootstrap: int = 2000  # resamples for the paired intervals
    seed: int = 0

    NOT_HASHED: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        if self.bootstrap < 100:
            raise ConfigError(f"{getattr(self, '_where', 'followup')}.bootstrap must be >= 100")


def _train(root: Path, c: FollowupConfig) -> Path:
    from megapairs.train.config import TrainConfig
    from megapairs.train.trainer import Trainer

    out = root / "retriever"
    opts = {"feature_cache_dir": str(feature_cache(root)), **c.train_options, "data": str(root / "dataset"),
            "model": c.model}
    cfg = TrainConfig.from_dict(opts, "followup.train_options")
    t0 = time.perf_counter()
    result = Trainer(cfg, out).fit()
    log.info("followup: trained %d steps in %.0f s, final loss %.4f -> %s", result.steps,
             time.perf_counter() - t0, result.final_loss, result.final_model)
    return Path(result.final_model)


def feature_cache(root: Path) -> Path:
    """Frozen image-tower outputs of the offline retriever, shared by training, evaluation and the
    index (one EfficientNet pass per image for all three)."""
    return root / "_cache" / "features"


def _load(spec: str, root: Path) -> Any:
    from megapairs.models.base import load_retriever

    model = load_retriever(spec)
    if hasattr(model, "feature_cache_dir"):
        model.feature_cache_dir = str(feature_cache(root))
    return model


def per_query_ranks(retriever: Any, dataset: Path) -> dict[str, np.ndarray]:
    """Rank (1 = first) of the best target for each composed query (validation rows' (query image,
    first instruction), merged as the `triplets` benchmark merges them), for the three query kinds,
    aligned on the composed queries: `image[i]` ranks composed query i's image alone, `text[i]` its
    instruction alone, each against composed query i's targets. The query's own image is removed
    from every ranking. Returns mode -> (Q,) float ranks."""
    from megapairs.evaluate.triplets import build_queries, load_rows

    rows = load_rows(dataset)
    names = sorted({p for r in rows for p in [r["q_img"], r["t_img"], *r["hns"]]})
    pos = {n: i for i, n in enumerate(names)}
    gallery = _encode(retriever, images=[_resolve(dataset, n) for n in names], role="candidate")  # (N, D)
    composed = build_queries(rows, "composed", "first")
    out = {}
    for mode in MODES:
        qs = composed if mode == "composed" else build_queries(rows, mode, "first")
        images = [_resolve(dataset, q["image"]) for q in qs] if mode != "text" else None
        texts = [q["text"] for q in qs] if mode != "image" else None
        q = _encode(retriever, images=images, text=texts, role="query")  # (Q, D)
        scores = q @ gallery.T  # (Q, N)
        for i, x in enumerate(qs):  # the query's own image is no answer (CIRCO / CIRR "remove")
            scores[i, [pos[r] for r in x["refs"]]] = -np.inf
        by_key = {_key(mode, x): scores[i] for i, x in enumerate(qs)}
        ranks = []
        for x in composed:  # ties count against the model: rank = 1 + candidates scoring >= the target
            s = by_key[_key(mode, x)]
            best = max(s[pos[t]] for t in x["targets"])
            ranks.append(float((s >= best).sum()))
        out[mode] = np.array(ranks)
    return out


def _key(mode: str, q: dict[str, Any]) -> tuple:
    return {"composed": (q["image"], q["text"]), "image": (q["image"],), "text": (q["text"],)}[mode]


def _encode(retriever: Any, **kw: Any) -> np.ndarray:
    out = []
    n = len(kw.get("images") or kw.get("text") or [])
    for i in range(0, n, 64):
        part = {k: (v[i:i + 64] if isinstance(v, list) else v) for k, v in kw.items()}
        out.append(np.asarray(retriever.encode(**part), np.float32))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _resolve(dataset: Path, name: str) -> str:
    p = Path(name)
    if p.is_absolute():
        return str(p)
    for base in (dataset, dataset / "images", dataset / "validation"):
        if (base / p).exists():
            return str(base / p)
    return str(dataset / p)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """mean(a - b) of paired 0/1 hits in percentage points, with the 95 % interval of
    `evaluate.bootstrap.paired_bootstrap` (the project's one bootstrap; note its b - a order)."""
    from megapairs.evaluate.bootstrap import paired_bootstrap as bootstrap

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not len(a):
        raise ValueError("paired_bootstrap needs two non-empty arrays of the same length")
    out = bootstrap(100 * b, 100 * a, resamples=resamples, seed=seed)
    return {"diff": out["diff"], "low": out["low"], "high": out["high"], "n": out["queries"]}


def run_followup(root: Path | str, c: FollowupConfig) -> dict[str, Any]:
    """The steps `c` asks for; returns the summary (also written to results/summary.json)."""
    from megapairs.artifacts import atomic_write_json

    root = Path(root)
    dataset = root / "dataset"
    summary: dict[str, Any] = {"metric": "recall@k in percent, the query image removed, ties ranked against"}
    timings: dict[str, float] = {}
    ckpt = None
    if c.train:
        t0 = time.perf_counter()
        ckpt = _train(root, c)
        summary["retriever"] = f"ckpt:{ckpt}"
        timings["train_s"] = round(time.perf_counter() - t0, 1)
    if c.evaluate:
        t0 = time.perf_counter()
        models = {"zero-shot": c.model, **({"trained": f"ckpt:{ckpt}"} if ckpt else {})}
        ranks = {}
        for name, spec in models.items():
            ranks[name] = per_query_ranks(_load(spec, root), dataset)
            summary[name] = {f"{m}/recall@{k}": 100 * float((r <= k).mean()) for m, r in ranks[name].items()
                             for k in RECALL_KS}
        best = "trained" if ckpt else "zero-shot"
        summary["queries"] = int(len(ranks[best]["composed"]))
        for k in RECALL_KS:
            hit = {n: {m: (r <= k).astype(np.float64) for m, r in rk.items()} for n, rk in ranks.items()}
            summary[f"composed_minus_image@{k}"] = paired_bootstrap(hit[best]["composed"], hit[best]["image"],
                                                                    resamples=c.bootstrap, seed=c.seed)
            if ckpt:
                summary[f"trained_minus_zero_shot@{k}"] = paired_bootstrap(
                    hit["trained"]["composed"], hit["zero-shot"]["composed"], resamples=c.bootstrap, seed=c.seed)
        timings["evaluate_s"] = round(time.perf_counter() - t0, 1)
    if c.index:
        from megapairs.search.index import GalleryIndex

        t0 = time.perf_counter()
        spec = f"ckpt:{ckpt}" if ckpt else c.model
        GalleryIndex.build(dataset / "images", _load(spec, root), root / "index")  # with its progress bar
        summary["index"] = str(root / "index")
        timings["index_s"] = round(time.perf_counter() - t0, 1)
    summary["timings"] = timings
    atomic_write_json(root / "results" / "summary.json", summary)
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """The few lines `megapairs run` prints."""
    lines = []
    models = [m for m in ("zero-shot", "trained") if m in summary]
    if models:
        lines.append(f"held-out composed queries: {summary['queries']} ({summary['metric']})")
        lines.append(f"{'model':<10} {'query':<9} " + " ".join(f"{'R@' + str(k):>6}" for k in RECALL_KS))
        for m in models:
            for mode in MODES:
                vals = " ".join(f"{summary[m][f'{mode}/recall@{k}']:>6.1f}" for k in RECALL_KS)
                lines.append(f"{m if mode == 'composed' else '':<10} {mode:<9} {vals}")
        for key, label in (("composed_minus_image", "composed - image-only"),
                           ("trained_minus_zero_shot", "trained - zero-shot, composed")):
            parts = [f"R@{k} {b['diff']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}]"
                     for k in RECALL_KS if (b := summary.get(f"{key}@{k}"))]
            if parts:
                lines.append(f"{label} (95% CI): " + "; ".join(parts))
    if "retriever" in summary:
        lines.append(f"trained retriever: {summary['retriever']} (megapairs evaluate / index --model ...)")
    if "index" in summary:
        lines.append(f"search it: megapairs serve --index {summary['index']}")
    return "\n".join(lines)
