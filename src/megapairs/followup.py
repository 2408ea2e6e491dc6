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
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

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

    def check_specs(self, where: str) -> None:
        from megapairs.models.base import RETRIEVERS
        import megapairs.models.zoo  # noqa: F401  (registers the built-in retrievers)

        RETRIEVERS.check(self.model, f"{where}.model")


def _train(root: Path, c: FollowupConfig, overwrite: bool = False) -> Path:
    from megapairs.train.config import TrainConfig
    from megapairs.train.trainer import Trainer

    out = root / "retriever"
    opts = {"feature_cache_dir": str(feature_cache(root)), **c.train_options, "data": str(root / "dataset"),
            "model": c.model}
    cfg = TrainConfig.from_dict(opts, "followup.train_options")
    t0 = time.perf_counter()
    try:
        result = Trainer(cfg, out, overwrite=overwrite).fit()  # a changed recipe retrains only on --overwrite
    except ConfigError as e:
        if overwrite or "different configuration" not in str(e):
            raise
        raise ConfigError(f"{out} holds a retriever trained with other followup.train_options; rerun "
                          "`megapairs run` with --overwrite to retrain it (the finished stages are kept)") from e
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


def evaluate_models(root: Path, models: dict[str, str], c: FollowupConfig) -> dict[str, dict[str, Any]]:
    """Each model on the dataset's validation split with the one triplet evaluator
    (`evaluate("triplets", ...)`): composed, image-only and text-only, the query image removed from
    every ranking, ties against the model. Returns name -> the evaluator's result."""
    from megapairs.evaluate.runner import evaluate

    opts = {"reference_policy": "remove", "instructions": "first", "bootstrap": c.bootstrap,
            "bootstrap_seed": c.seed, "cache_dir": str(root / "_cache" / "evaluate")}
    return {name: evaluate("triplets", root / "dataset", _load(spec, root), opts) for name, spec in models.items()}


def _interval(b: dict[str, Any]) -> dict[str, float]:
    return {"diff": b["diff"], "low": b["low"], "high": b["high"], "n": b["queries"]}


def run_followup(root: Path | str, c: FollowupConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """The steps `c` asks for; returns the summary (also written to results/summary.json).
    `overwrite`: retrain when retriever/ holds a checkpoint trained with other options."""
    from megapairs.artifacts import atomic_write_json

    root = Path(root)
    dataset = root / "dataset"
    summary: dict[str, Any] = {"metric": "recall@k in percent, the query image removed, ties ranked against"}
    timings: dict[str, float] = {}
    ckpt = None
    if c.train:
        t0 = time.perf_counter()
        ckpt = _train(root, c, overwrite)
        summary["retriever"] = f"ckpt:{ckpt}"
        timings["train_s"] = round(time.perf_counter() - t0, 1)
    if c.evaluate:
        t0 = time.perf_counter()
        from megapairs.evaluate.bootstrap import compare_results

        models = {"zero-shot": c.model, **({"trained": f"ckpt:{ckpt}"} if ckpt else {})}
        results = evaluate_models(root, models, c)
        for name, res in results.items():
            summary[name] = {f"{m}/recall@{k}": res["metrics"][f"{m}/R@{k}"] for m in MODES for k in RECALL_KS}
        best = "trained" if ckpt else "zero-shot"
        summary["queries"] = int(results[best]["num_queries"])
        for k in RECALL_KS:
            summary[f"composed_minus_image@{k}"] = _interval(results[best]["details"]["bootstrap"]["composed-image"][f"R@{k}"])
            if ckpt:
                summary[f"trained_minus_zero_shot@{k}"] = _interval(compare_results(
                    results["zero-shot"], results["trained"], f"composed/R@{k}", resamples=c.bootstrap, seed=c.seed))
        timings["evaluate_s"] = round(time.perf_counter() - t0, 1)
    if c.index:
        from megapairs.search.index import GalleryIndex

        t0 = time.perf_counter()
        spec = f"ckpt:{ckpt}" if ckpt else c.model
        GalleryIndex.build(dataset / "images", _load(spec, root), root / "index", overwrite=overwrite)  # with its progress bar
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
