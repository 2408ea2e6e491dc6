"""The `megapairs` command. `main(argv)` returns an exit code, so tests drive it directly."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

# Subcommands that other packages add with `register(subparsers)` (skipped if not importable).
PLUGINS = ("megapairs.evaluate.cli", "megapairs.train.cli", "megapairs.search.cli")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="demo | paper | tiny (default: the run's saved config, else demo)")
    p.add_argument("--config", help="a YAML file laid over the preset")
    p.add_argument("--executor", help="local | ray | ray:ADDRESS")
    p.add_argument("--overwrite", action="store_true", help="discard artifacts made by another config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. mine.k=30 ingest.limit=500")


def _load(args) -> Any:
    from megapairs.config import load_config

    saved = Path(args.run) / "config.yaml"
    if args.preset or args.config or not saved.exists():
        config = load_config(args.preset or ("demo" if not args.config else None), args.config, args.overrides)
    else:
        config = load_config(None, saved, args.overrides)
    if args.executor:
        config.executor = args.executor
        config.validate()
    return config


def cmd_run(args) -> int:
    from megapairs.pipeline import run_pipeline

    config = _load(args)
    only = [args.command] if args.command != "run" else None
    manifests = run_pipeline(args.run, config, until=getattr(args, "until", None), only=only,
                             overwrite=args.overwrite)
    followup = manifests.pop("followup", None)
    for name, m in manifests.items():
        extra = {k: m[k] for k in ("status_counts", "pairs_by_view", "queries", "status") if k in m}
        print(f"{name}: {m['rows']} rows {json.dumps(extra) if extra else ''}")
    if "export" in manifests:
        from megapairs.export.validate import validate_megapairs

        dataset = Path(args.run) / "dataset"
        problems = validate_megapairs(dataset)
        for p in problems:
            print(f"dataset problem: {p}", file=sys.stderr)
        print(f"dataset: {dataset} ({'valid' if not problems else f'{len(problems)} problems'}); "
              f"preview: {dataset / 'preview.html'}")
        if problems:
            return 1
    if followup:
        from megapairs.followup import summary_table

        print(summary_table(followup))
    if "mine" in manifests and args.command == "run" and not getattr(args, "no_report", False):
        from megapairs.report import pairs_report

        print(f"pairs page: {pairs_report(args.run)}")
    return 0


def cmd_status(args) -> int:
    from megapairs.status import run_status

    print(run_status(Path(args.run)))
    return 0


def cmd_inspect(args) -> int:
    from megapairs.status import inspect_artifact

    print(inspect_artifact(Path(args.artifact), n=args.n, columns=args.columns))
    return 0


def cmd_report(args) -> int:
    from megapairs.report import pairs_report

    print(pairs_report(args.run, n=args.n))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="megapairs", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run or resume the whole pipeline in a run folder")
    p.add_argument("--run", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--until", help="stop after this stage")
    p.add_argument("--no-report", action="store_true", help="skip the HTML page of sample pairs")
    _config_args(p)
    p.set_defaults(func=cmd_run)
    for stage, text in [("ingest", "read images + captions into the corpus artifact"),
                        ("embed", "embed the corpus in every similarity view"),
                        ("mine", "mine heterogeneous KNN pairs with hard negatives"),
                        ("annotate", "describe pair relations and write instructions"),
                        ("export", "write MegaPairs-format triplets")]:
        p = sub.add_parser(stage, help=text)
        p.add_argument("--run", required=True, help="run folder")
        _config_args(p)
        p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="where a run stands")
    p.add_argument("run")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("inspect", help="manifest and sample rows of an artifact")
    p.add_argument("artifact")
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--columns", nargs="*")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("report", help="HTML page of sample mined pairs")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=40)
    p.set_defaults(func=cmd_report)

    for module in PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            logging.getLogger("megapairs").debug("subcommands of %s unavailable: %s", module, e)
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("faiss", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from megapairs.artifacts import ArtifactError
    from megapairs.configbase import ConfigError
    from megapairs.registry import SpecError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, ArtifactError, SpecError, FileNotFoundError, ImportError, ValueError) as e:
        if args.verbose:
            raise
        print(f"megapairs: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("megapairs: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
