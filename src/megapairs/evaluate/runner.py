"""`evaluate(benchmark, data_dir, retriever, options)`: run one benchmark, return and write the result.

Writes, when `options.out_dir` is set: `<benchmark>_<split>.json` (the full result),
`<benchmark>_<split>.md` (our numbers beside the paper's) and any submission/ranking files.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from megapairs import __version__
from megapairs.artifacts import atomic_write_bytes, atomic_write_json
from megapairs.evaluate import paper_numbers, report
from megapairs.configbase import ConfigError
from megapairs.evaluate.common import DTYPES, DataError, EvalOptions
from megapairs.evaluate.context import Context

BENCHMARKS = ("circo", "cirr", "fashioniq", "genecis", "mmeb", "triplets")


def _options(options: EvalOptions | Mapping[str, Any] | None) -> EvalOptions:
    if options is None:
        return EvalOptions()
    if isinstance(options, EvalOptions):
        return options
    return EvalOptions.from_dict(dict(options), "options")


@contextlib.contextmanager
def instruction_override(retriever: Any, instruction: str | None) -> Iterator[None]:
    """Use `instruction` as the retriever's task instruction for the run, then restore the old one."""
    if instruction is None:
        yield
        return
    if not hasattr(retriever, "instruction"):
        raise ConfigError(f"--instruction: {getattr(retriever, 'spec', type(retriever).__name__)} has no "
                          "instruction slot (only instruction-prompted retrievers such as mllm: take one)")
    old = retriever.instruction
    retriever.instruction = instruction
    try:
        yield
    finally:
        retriever.instruction = old


def instruction_record(retriever: Any, ctx: Context, benchmark: str, opts: EvalOptions) -> dict[str, Any]:
    """What the queries used as task instruction, for the result JSON."""
    if opts.instruction is not None:
        return {"source": "--instruction", "text": opts.instruction}
    if benchmark == "mmeb":
        where = "the instruction slot" if ctx.has_instruction_slot else "the query text"
        return {"source": f"per task: each MMEB dataset's own instruction, in {where}", "text": None}
    if hasattr(retriever, "instruction"):
        return {"source": "retriever default", "text": retriever.instruction}
    return {"source": "none (the retriever takes no instruction)", "text": None}


def weights_dtype(retriever: Any, opts: EvalOptions) -> str | None:
    """The dtype of the retriever's weights (e.g. "bfloat16"), as asked for or as found."""
    if opts.dtype:
        return DTYPES[opts.dtype]
    params = getattr(retriever, "parameters", None)
    if callable(params):
        try:
            return str(next(iter(params())).dtype).removeprefix("torch.")
        except (StopIteration, TypeError):
            return None
    return None


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
    with instruction_override(retriever, opts.instruction):
        out = module.run(data_dir, ctx)
        instruction = instruction_record(retriever, ctx, benchmark, opts)
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
        "instruction": instruction,
        "dtype": weights_dtype(retriever, opts),
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
