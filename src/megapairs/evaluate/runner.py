"""`evaluate(benchmark, data_dir, retriever, options)`: run one benchmark, return and write the result.

Writes, when `options.out_dir` is set: `<benchmark>_<split>.json` (the full result),
`<benchmark>_<split>.md` (our numbers beside the paper's) and any submission/ranking files.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Mapping

from megapairs import __version__
from megapairs.artifacts import atomic_write_bytes, atomic_write_json
from megapairs.evaluate import paper_numbers, report
from megapairs.evaluate.common import DataError, EvalOptions
from megapairs.evaluate.context import Context

BENCHMARKS = ("circo", "cirr", "fashioniq", "genecis", "mmeb", "triplets")


def _options(options: EvalOptions | Mapping[str, Any] | None) -> EvalOptions:
    if options is None:
        return EvalOptions()
    if isinstance(options, EvalOptions):
        return options
    return EvalOptions.from_dict(dict(options), "options")


def evaluate(benchmark: str, data_dir: str | Path, retriever: Any,
             options: EvalOptions | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate `retriever` (the `megapairs.models.base.Retriever` protocol) on one benchmark."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    opts = _options(options)
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"missing {benchmark} data folder: {data_dir}")
    module = importlib.import_module(f"megapairs.evaluate.{benchmark}")
    ctx = Context(retriever, opts, benchmark)
    t0 = time.perf_counter()
    out = module.run(data_dir, ctx)
    spec = str(getattr(retriever, "spec", type(retriever).__name__))
    model = opts.paper_model or paper_numbers.guess_model(spec)
    paper = paper_numbers.lookup(model, benchmark)
    result: dict[str, Any] = {
        "benchmark": benchmark,
        "split": out.split,
        "model": spec,
        "preprocess_id": str(retriever.preprocess_id),
        "template": out.template,
        "reference_policy": out.reference_policy,
        "metrics": out.metrics,
        "details": out.details,
        "num_queries": out.num_queries,
        "gallery_size": out.gallery_size,
        "partial": opts.limit is not None,
        "paper": {"model": paper_numbers.ALIASES.get(str(model).lower(), model), **paper} if paper else None,
        "options": opts.to_dict(),
        "options_hash": opts.config_hash(),
        "gallery_cache_hits": ctx.cache_hits,
        "wall_s": round(time.perf_counter() - t0, 3),
        "code_version": __version__,
        "data_dir": str(data_dir),
    }
    if opts.out_dir:
        result["files"] = write(result, out.files, Path(opts.out_dir))
    return result


def write(result: dict[str, Any], files: Mapping[str, Any], out_dir: Path) -> list[str]:
    stem = f"{result['benchmark']}_{result['split']}"
    written = []
    for name, obj in files.items():
        atomic_write_json(out_dir / name, obj)
        written.append(str(out_dir / name))
    atomic_write_bytes(out_dir / f"{stem}.md", report.markdown(result).encode())
    written.append(str(out_dir / f"{stem}.md"))
    atomic_write_json(out_dir / f"{stem}.json", {**result, "files": written + [str(out_dir / f"{stem}.json")]})
    return written + [str(out_dir / f"{stem}.json")]
