"""`megapairs evaluate`: the command-line front of `megapairs.evaluate.runner.evaluate`.

`register(subparsers)` only builds the argument parser (no heavy imports); the work happens in
`run(args)`. Standalone: `python -m megapairs.evaluate.cli --benchmark circo --data ... --model ...`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

BENCHMARKS = ("circo", "cirr", "fashioniq", "genecis", "mmeb", "triplets")
# What --split, --categories and --tasks may be per benchmark (checked before the model loads).
SPLITS = {"circo": ("val", "test"), "cirr": ("val", "test1", "test", "dev"), "fashioniq": ("val",),
          "genecis": ("test",), "mmeb": ("test",), "triplets": ("val",)}
CHOICES = {"categories": ("fashioniq", ("dress", "shirt", "toptee")),
           "tasks": ("genecis", ("focus_attribute", "change_attribute", "focus_object", "change_object"))}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--data", required=True, help="benchmark folder in its official layout (triplets: file or folder)")
    p.add_argument("--model", required=True, help="retriever spec for megapairs.models.base.load_retriever")
    p.add_argument("--split", default=None, help="circo: val|test; cirr: val|test1; fashioniq: val (default val)")
    p.add_argument("--out", default=None, help="folder for the result JSON, Markdown and submission files")
    p.add_argument("--template", default=None, help="query template name, or a format string like '{caption}'")
    p.add_argument("--reference-policy", default=None, choices=("keep", "remove", "min"),
                   help="keep the query's reference image in the ranking, remove it, or min: keep it with the "
                        "row's lowest score, as CIRPLANT does (default per benchmark)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cache-dir", default=None, help="gallery-embedding cache (default ~/.cache/megapairs/evaluate)")
    p.add_argument("--image-dir", default=None, help="where the images are, if not in the default place")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries (smoke test; marked partial)")
    p.add_argument("--paper-model", default=None, help="paper row to compare with, e.g. BGE-VL-base")
    p.add_argument("--categories", type=_csv, default=None, help="fashioniq: comma list (default all three)")
    p.add_argument("--tasks", type=_csv, default=None, help="genecis: comma list (default all four)")
    p.add_argument("--datasets", type=_csv, default=None, help="mmeb: comma list (default all found)")
    p.add_argument("--instructions", default="first", choices=("first", "all"), help="triplets")
    p.add_argument("--query-modes", type=_csv, default=None, help="triplets: composed,image,text")
    p.add_argument("--instruction", default=None,
                   help="task instruction for instruction-prompted retrievers (mllm:), replacing their default "
                        "(mmeb: replaces every dataset's own instruction); recorded in the result")
    p.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"),
                   help="load the retriever's weights in this dtype (bf16/fp16 for 7B models); recorded")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="triplets: paired bootstrap resamples for the 95%% intervals (0 = none)")
    p.add_argument("--no-progress", action="store_true")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `evaluate` subcommand to an argparse subparsers object; `args.func(args)` runs it."""
    p = subparsers.add_parser("evaluate", help="zero-shot CIR benchmarks (CIRCO, CIRR, FashionIQ, GeneCIS, "
                              "MMEB) and held-out triplets", description=__doc__)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "split": args.split, "template": args.template, "reference_policy": args.reference_policy,
        "batch_size": args.batch_size, "cache_dir": args.cache_dir, "out_dir": args.out,
        "image_dir": args.image_dir, "limit": args.limit, "paper_model": args.paper_model,
        "instructions": args.instructions, "progress": not args.no_progress,
        "instruction": args.instruction, "dtype": args.dtype, "bootstrap": args.bootstrap,
    }
    for name in ("categories", "tasks", "datasets", "query_modes"):
        if getattr(args, name):
            opts[name] = getattr(args, name)
    return opts


def check_options(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluate options, validated before the (maybe 7B) model loads; a value outside an option's
    choices is named with the allowed ones."""
    from megapairs.configbase import ConfigError
    from megapairs.evaluate.common import EvalOptions

    splits = SPLITS[args.benchmark]
    if args.split is not None and args.split not in splits:
        raise ConfigError(f"--split {args.split!r}: {args.benchmark} has splits {', '.join(splits)}")
    for name, (benchmark, allowed) in CHOICES.items():
        given = getattr(args, name) or ()
        bad = [v for v in given if v not in allowed]
        if given and args.benchmark != benchmark:
            raise ConfigError(f"--{name} is for {benchmark} only, not {args.benchmark}")
        if bad:
            raise ConfigError(f"--{name} {','.join(bad)}: {benchmark} has {', '.join(allowed)}")
    opts = options_from_args(args)
    EvalOptions.from_dict(dict(opts), "evaluate")  # query modes, dtype, batch size, limit, ...
    return opts


def run(args: argparse.Namespace) -> int:
    from megapairs.configbase import ConfigError
    from megapairs.evaluate.common import DTYPES
    from megapairs.evaluate.runner import evaluate
    from megapairs.models import base

    opts = check_options(args)
    load_options = {"dtype": DTYPES[args.dtype]} if args.dtype else {}
    try:
        retriever = base.load_retriever(args.model, **load_options)
    except TypeError as e:
        raise ConfigError(f"--dtype is not supported by {args.model} ({e})") from None
    result = evaluate(args.benchmark, args.data, retriever, opts)  # errors: the one-line handler
    summary = {k: round(v, 2) for k, v in result["metrics"].items()}
    from megapairs.output import print_json

    print_json({"benchmark": result["benchmark"], "split": result["split"], "metrics": summary,
                "files": result.get("files", [])})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megapairs-evaluate", description=__doc__)
    add_arguments(parser)
    from megapairs.errors import run_entry

    return run_entry(run, parser.parse_args(argv), "megapairs-evaluate")


if __name__ == "__main__":
    sys.exit(main())
