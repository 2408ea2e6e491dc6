"""The `megapairs` command. `main(argv)` returns an exit code, so tests drive it directly."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

# Subcommands that other packages add with `register(subparsers)` (skipped if not importable).
PLUGINS = ("megapairs.evaluate.cli", "megapairs.train.cli", "megapairs.search.cli")


STAGE_HELP = [("ingest", "read images + captions into the corpus artifact"),
              ("embed", "embed the corpus in every similarity view"),
              ("mine", "mine heterogeneous KNN pairs with hard negatives"),
              ("annotate", "describe pair relations and write instructions"),
              ("export", "write MegaPairs-format triplets")]
# Flags that work anywhere on the line (`megapairs run ... --debug` as well as `megapairs --debug run`).
GLOBAL_FLAGS = ("--debug", "-v", "--verbose")


def _config_args(p: argparse.ArgumentParser, section: str | None = None) -> None:
    p.add_argument("--preset", help="demo | paper | tiny (default: the run's saved config, else demo)")
    p.add_argument("--config", help="a YAML file laid over the preset")
    p.add_argument("--executor", help="local | ray | ray:ADDRESS")
    p.add_argument("--overwrite", action="store_true", help="discard artifacts made by another config")
    example = f"{section}.FIELD=VALUE (the {section}. prefix may be left out)" if section else \
        "section.field=value, e.g. mine.k=30 ingest.limit=500"
    p.add_argument("overrides", nargs="*", help=f"dotted overrides: {example}")


def _stage_overrides(args) -> list[str]:
    """A stage command's overrides may leave out its own section: `megapairs export image_size=512`."""
    from megapairs.config import SECTIONS

    section = STAGE_SECTION.get(args.command)
    out = []
    for item in args.overrides:
        key = item.split("=", 1)[0]
        if section and "=" in item and key.split(".")[0] not in SECTIONS:
            item = f"{section}.{item}"
        elif not section and "=" in item and "." not in key and key not in _top_fields():
            _unsectioned(item, key)
        out.append(item)
    return out


def _top_fields() -> set[str]:
    import dataclasses

    from megapairs.config import PipelineConfig

    return {f.name for f in dataclasses.fields(PipelineConfig)}


def _unsectioned(item: str, key: str) -> None:
    """`megapairs run k=30`: say which section(s) have a field `k` (`mine.k=30`)."""
    import dataclasses

    from megapairs.config import PipelineConfig
    from megapairs.configbase import ConfigError

    root = PipelineConfig()
    owners = [f.name for f in dataclasses.fields(root)
              if dataclasses.is_dataclass(getattr(root, f.name))
              and key in {g.name for g in dataclasses.fields(getattr(root, f.name))}]
    example = " or ".join(f"{o}.{item}" for o in owners) if owners else f"mine.{item}"
    raise ConfigError(f"override {item!r} names no section" + ("" if owners else f" (no section has a field {key!r})"),
                      hint=f"write section.field=value, e.g. {example}")


STAGE_SECTION = {"ingest": "ingest", "embed": "embed", "mine": "mine", "annotate": "annotate", "export": "export"}


def _load(args) -> Any:
    from megapairs.config import load_config

    saved = Path(args.run) / "config.yaml"
    overrides = _stage_overrides(args)
    if args.preset or args.config or not saved.exists():
        config = load_config(args.preset or ("demo" if not args.config else None), args.config, overrides)
    else:
        config = load_config(None, saved, overrides)
    if args.executor:
        config.executor = args.executor
        config.validate()
    return config


def _stage_summary(m: dict[str, Any]) -> dict[str, Any]:
    return {"rows": m["rows"], **{k: m[k] for k in ("status_counts", "pairs_by_view", "queries", "status") if k in m}}


def cmd_run(args) -> int:
    from megapairs.output import emit
    from megapairs.pipeline import run_pipeline

    config = _load(args)
    only = [args.command] if args.command != "run" else None
    outputs = {"export": args.out} if getattr(args, "out", None) else None
    manifests = run_pipeline(args.run, config, until=getattr(args, "until", None), only=only,
                             overwrite=args.overwrite, outputs=outputs)
    followup = manifests.pop("followup", None)
    result: dict[str, Any] = {"run": str(args.run), "stages": {n: _stage_summary(m) for n, m in manifests.items()}}
    lines = []
    for name, m in manifests.items():
        extra = {k: v for k, v in _stage_summary(m).items() if k != "rows"}
        lines.append(f"{name}: {m['rows']} rows {json.dumps(extra) if extra else ''}".rstrip())
    code = 0
    if "export" in manifests:
        from megapairs.export.validate import validate_megapairs

        dataset = Path(args.out) if getattr(args, "out", None) else Path(args.run) / "dataset"
        problems = [] if getattr(args, "no_validate", False) else validate_megapairs(dataset)
        for p in problems:
            print(f"dataset problem: {p}", file=sys.stderr)
        state = "not validated" if getattr(args, "no_validate", False) else \
            ("valid" if not problems else f"{len(problems)} problems")
        result["dataset"] = {"path": str(dataset), "state": state, "problems": problems,
                             "preview": str(dataset / "preview.html")}
        lines.append(f"dataset: {dataset} ({state}); preview: {dataset / 'preview.html'}")
        code = 1 if problems else 0
    if followup:
        from megapairs.followup import summary_table

        result["followup"] = followup
        lines.append(summary_table(followup))
    if "mine" in manifests and args.command == "run" and not getattr(args, "no_report", False):
        from megapairs.report import pairs_report

        page = pairs_report(args.run)
        result["pairs_page"] = str(page)
        lines.append(f"pairs page: {page}")
    emit(args, result, "\n".join(lines))
    return code


def cmd_status(args) -> int:
    from megapairs.output import emit
    from megapairs.status import format_status, run_status_data

    data = run_status_data(Path(args.run))
    emit(args, data, format_status(data))
    damaged = [a for a in data["artifacts"].values() if a["state"] == "damaged"]
    for a in damaged:  # the whole status is shown; exit code 2 says something needs repair
        print(f"megapairs: error: {a['path']} is damaged ({a['reason']}); {a['hint']}", file=sys.stderr)
    return 2 if damaged else 0


def cmd_inspect(args) -> int:
    from megapairs.output import emit
    from megapairs.status import format_inspect, inspect_data

    data = inspect_data(Path(args.artifact), n=args.n, columns=args.columns)
    emit(args, data, format_inspect(data))
    return 0


def cmd_report(args) -> int:
    from megapairs.output import emit
    from megapairs.report import pairs_report

    page = pairs_report(args.run, n=args.n)
    emit(args, {"pairs_page": str(page)}, str(page))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from megapairs import __version__

    parser = argparse.ArgumentParser(
        prog="megapairs", description="MegaPairs data synthesis (ingest -> embed -> mine -> annotate -> export), "
        "retriever training, benchmark evaluation and gallery search. `megapairs COMMAND --help` for each command.",
        epilog="Exit codes: 0 done, 1 the run failed (rerun the same command to resume), 2 a usage or input "
        "error. --json prints the result as JSON on stdout (logs stay on stderr); --debug shows tracebacks.")
    parser.add_argument("--version", action="version", version=f"megapairs {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run or resume the whole pipeline in a run folder",
                       description="Run the stages in order in a run folder; rerun the same command to resume.")
    p.add_argument("--run", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--until", help="stop after this stage (ingest, embed, mine, annotate, export)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML page of sample pairs")
    _config_args(p)
    p.set_defaults(func=cmd_run)
    for stage, text in STAGE_HELP:
        p = sub.add_parser(stage, help=text, description=f"{text[0].upper()}{text[1:]} (one stage of `megapairs run`; "
                           "uses the run's saved config.yaml unless --preset or --config is given).")
        p.add_argument("--run", required=True, help="run folder")
        if stage == "export":
            p.add_argument("--out", help="dataset folder (default RUN/dataset)")
            p.add_argument("--no-validate", action="store_true", help="skip the format check after writing")
        _config_args(p, STAGE_SECTION[stage])
        p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="where a run stands", description="Each artifact of a run: complete, "
                       "partial (rerun to resume), damaged (a bookkeeping file does not read; it says which) or not "
                       "started. Exit code 2 if RUN is not a folder or an artifact is damaged.")
    p.add_argument("run", help="run folder")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("inspect", help="manifest and sample rows of an artifact",
                       description="The manifest and the first rows of an artifact folder (RUN/corpus, "
                       "RUN/pairs, RUN/dataset, ...). Exit code 2 if it is not one.")
    p.add_argument("artifact", help="artifact folder, e.g. runs/demo/pairs")
    p.add_argument("-n", type=int, default=5, help="rows to show (default 5)")
    p.add_argument("--columns", nargs="*", help="only these columns")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("report", help="HTML page of sample mined pairs",
                       description="Write RUN/report/pairs.html: sample mined pairs side by side.")
    p.add_argument("run", help="run folder with a finished pairs artifact")
    p.add_argument("-n", type=int, default=40, help="pairs to show (default 40)")
    p.set_defaults(func=cmd_report)

    for module in PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            logging.getLogger("megapairs").debug("subcommands of %s unavailable: %s", module, e)
            continue
        mod.register(sub)
    for name, p in sub.choices.items():  # --json on every command (the plugins' own flag is kept)
        if "--json" not in p._option_string_actions:
            p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (logs on stderr)")
    return parser


def _hoist_global_flags(argv: list[str]) -> list[str]:
    """Move --debug / -v before the command, so they work anywhere on the line (not after `--`)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:cut] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:cut] if a not in GLOBAL_FLAGS] + argv[cut:]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(_hoist_global_flags(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("faiss", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from megapairs.output import json_stdout, print_json

    as_json = bool(getattr(args, "json", False))
    from megapairs.errors import debug_requested

    debug = debug_requested(args)
    with json_stdout() if as_json else contextlib.nullcontext():
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("megapairs: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        except Exception as e:  # one line for the user; the traceback with --debug
            from megapairs.errors import describe, print_error

            code = print_error(e, debug=debug)
            if as_json:
                print_json({"error": describe(e)[1], "exit_code": code})
            return code


if __name__ == "__main__":
    sys.exit(main())
