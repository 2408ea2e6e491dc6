"""Train a retriever on MegaPairs-format triplets (InfoNCE over in-batch candidates + hard negatives).

    megapairs train --data TRIPLETS --model clip:openai/clip-vit-base-patch16 --out runs/base \\
        batch_size=256 lr=5e-6 max_steps=15000 grad_cache_chunk=128

Overrides are `field=value` (YAML values; a leading `train.` is accepted). Multi-GPU:
`torchrun --nproc_per_node 8 -m megapairs.train --data ... --model ... --out ...`.
A rerun with the same `--out` resumes from the newest checkpoint. See docs/train.md.

(`register(subparsers)` adds this subcommand to the main `megapairs` CLI.)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from megapairs.configbase import ConfigError, apply_overrides
from megapairs.train.config import TrainConfig


def _coerce_numbers(data: dict[str, Any]) -> dict[str, Any]:
    """YAML reads `1e-5` as a string; numeric fields take it as a number."""
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        v = data.get(f.name)
        if isinstance(v, str) and any(t in str(hints[f.name]) for t in ("float", "int")):
            try:
                data[f.name] = int(v) if "int" in str(hints[f.name]) and v.lstrip("-").isdigit() else float(v)
            except ValueError:
                pass
    return data


def build_config(args: argparse.Namespace) -> TrainConfig:
    data: dict[str, Any] = {}
    if args.config:
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        section = loaded.get("train", loaded) if isinstance(loaded, dict) else None
        if not isinstance(section, dict):
            raise ConfigError(f"{args.config}: expected TrainConfig fields (at the top level or under `train:`), "
                              f"got {type(section).__name__}")
        data.update(section)
    for o in args.overrides:
        if "=" not in o:
            raise ConfigError(f"train override {o!r} must look like field=value, e.g. lr=1e-5 batch_size=64")
    overrides = [o[len("train."):] if o.startswith("train.") else o for o in args.overrides]
    apply_overrides(data, overrides)
    if args.data:
        data["data"] = args.data
    if args.model:
        data["model"] = args.model
    return TrainConfig.from_dict(_coerce_numbers(data), "train")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="triplets: Parquet/JSONL file or folder (export artifact or released layout)")
    p.add_argument("--model", help="retriever spec: clip:NAME, mllm:NAME, offline:default, ckpt:FOLDER")
    p.add_argument("--out", required=True, help="run folder (checkpoints, final model, card)")
    p.add_argument("--config", help="YAML with TrainConfig fields (top level or under `train:`)")
    p.add_argument("--overwrite", action="store_true", help="discard a run in --out made with another config")
    p.add_argument("overrides", nargs="*", help="field=value, e.g. lr=1e-5 batch_size=64 lora_r=32")


def check_out(out: str | Path, data: str | None) -> None:
    """--out is a folder of its own: not inside a megapairs artifact (a run's corpus, dataset, ...) nor
    inside the training data, where checkpoints would mix with what other commands read."""
    from megapairs.errors import UserError

    o = Path(out).expanduser().resolve()
    fix = "give a folder of its own, e.g. --out runs/ft"
    for folder in (o, *o.parents):
        if (folder / ".megapairs").is_dir():
            raise UserError(f"--out {out} is inside the megapairs artifact {folder}", hint=fix)
    if data and not str(data).startswith(("hf:", "hf://")):
        d = Path(data).expanduser().resolve()
        if o == d or d in o.parents:
            raise UserError(f"--out {out} is inside the training data {data}", hint=fix)


def run(args: argparse.Namespace) -> int:
    from megapairs.train.trainer import Trainer

    cfg = build_config(args)  # errors go to the one-line handler (megapairs.cli.main or errors.run_entry)
    check_out(args.out, cfg.data)
    result = Trainer(cfg, args.out, overwrite=args.overwrite).fit()
    from megapairs.output import emit

    text = "\n".join([f"trained {result.steps} steps, final loss {result.final_loss:.4f}; model in {result.final_model}",
                      *(f"  {k}: {v:.4g}" for k, v in result.metrics.items())])
    emit(args, {"steps": result.steps, "final_loss": result.final_loss, "model": str(result.final_model),
                "metrics": dict(result.metrics)}, text)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a retriever on triplets (contrastive, BGE-VL recipe)",
                              description=__doc__.split("\n\n(`register")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megapairs-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from megapairs.errors import run_entry

    return run_entry(run, args, "megapairs-train")
