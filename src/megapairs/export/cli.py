"""The export stage on its own: `python -m megapairs.export.cli` (prog `megapairs-export`).

    python -m megapairs.export.cli --run RUN [--out DIR] [--executor local|ray] [--overwrite] [FIELD=VALUE ...]

Like `megapairs export`, it starts from the run's saved config.yaml (its export section and executor),
so it finds the export `megapairs run` made; a `--config` file's export fields and then the overrides
go on top (`megapairs export --config FILE` instead uses FILE in place of the saved config.yaml). Overrides take YAML values and may omit the `export.` prefix (`image_size=512`,
`formats=[parquet,webdataset]`). `register(subparsers)` adds the same parser to another CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from megapairs.configbase import apply_overrides

SECTION = "export"


def saved_config(run: str | Path | None) -> dict[str, Any]:
    """The run's config.yaml (what `megapairs run` saved), or {} for a run without one."""
    from megapairs.config import read_yaml

    saved = Path(run) / "config.yaml" if run else None
    return read_yaml(saved) if saved is not None and saved.is_file() else {}


def build_config(overrides: list[str], config_file: str | None = None, run: str | Path | None = None):
    """The export section of the run's saved config.yaml (as `megapairs export` uses it), then a
    YAML file's export fields, then the overrides, each on top of the last."""
    from megapairs.config import SECTIONS, read_yaml
    from megapairs.export.config import ExportConfig

    data: dict[str, Any] = dict(saved_config(run).get(SECTION) or {})
    if config_file:
        loaded = read_yaml(config_file)
        whole = any(k in SECTIONS for k in loaded)  # a pipeline config: only its export section
        data.update((loaded.get(SECTION) if whole else loaded) or {})
    items = [o[len(SECTION) + 1:] if o.startswith(SECTION + ".") else o for o in overrides]
    return ExportConfig.from_dict(apply_overrides({SECTION: data}, [f"{SECTION}.{o}" for o in items])[SECTION],
                                  SECTION)


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="write the MegaPairs-format triplet dataset of a run",
        description="Join pairs with annotations into (q_img, q_text, t_img, hns) triplets; write images once, "
                    "Parquet/JSONL/WebDataset shards split train/validation by image, a dataset card and an HTML "
                    "preview. Resumable: rerun to finish an interrupted export.")
    p.add_argument("--run", required=True, help="run folder holding corpus/, pairs/ and annotations/")
    p.add_argument("--out", default=None, help="dataset folder (default: RUN/dataset)")
    p.add_argument("--config", default=None, help="YAML file with an `export:` section (or the fields alone), "
                   "laid over the run's saved config.yaml")
    p.add_argument("--executor", default=None, help="local, ray, or ray:ADDRESS (default: the run's, else local)")
    p.add_argument("--overwrite", action="store_true", help="discard an export made with another configuration")
    p.add_argument("--no-validate", action="store_true", help="skip the contract check after writing")
    p.add_argument("overrides", nargs="*", help="export.FIELD=VALUE (the prefix is optional), over the run's "
                   "saved config.yaml")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    from megapairs.executors import make_executor
    from megapairs.export.stage import ExportStage
    from megapairs.export.validate import validate_megapairs
    from megapairs.pipeline import check_output_folder
    from megapairs.stages import run_stage

    config = build_config(args.overrides, args.config, args.run)
    executor = args.executor or saved_config(args.run).get("executor") or "local"
    stage = ExportStage(args.run, config, output=args.out)
    if args.out is not None:
        check_output_folder(Path(args.run), stage)  # never into the run itself or another artifact
    manifest = run_stage(stage, make_executor(executor), overwrite=args.overwrite)
    out = stage.output_path
    print(json.dumps({"dataset": str(out), "triplets": manifest.get("rows"), "splits": manifest.get("splits"),
                      "images": manifest.get("images"), "dropped": manifest.get("dropped")}, indent=2))
    if args.no_validate:
        return 0
    problems = validate_megapairs(out)
    for p in problems:
        print(f"invalid: {p}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megapairs-export")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["export", *(sys.argv[1:] if argv is None else argv)])
    from megapairs.errors import run_entry

    return run_entry(args.func, args, "megapairs-export")


if __name__ == "__main__":
    raise SystemExit(main())
