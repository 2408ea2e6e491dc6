"""Zero-shot vs trained `offline:default` on a synthesised dataset's held-out validation triplets,
plus data scaling and the hard-negative ablation. Reproduces the tables in docs/results.md.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/experiments/offline_demo.py \\
        --data /tmp/mp/runs/train-demo/dataset --out /tmp/mp/exp/offline-demo

Every step is a plain CLI call (printed before it runs, and listed in OUT/commands.sh):

    megapairs evaluate --benchmark triplets --data VAL --model offline:default ...   # zero-shot
    megapairs train --data DATA --model offline:default --out OUT/runs/ARM k=v ...
    megapairs evaluate --benchmark triplets --data VAL --model ckpt:OUT/runs/ARM ...  # trained

Arms (all seed 0, batch 32, lr 1e-3 (the offline default), warm-up 5 %, AdamW, temperature 0.02):

    full         100 % of the train triplets, num_hard_negatives=4 (query image + 3 of the 4 mined)
    frac25/50    25 % / 50 % (nested seeded subsets), same epochs (so fewer steps)
    frac25/50-eqsteps   the same subsets, trained for as many steps as `full`
    full-10ep    as `full`, 10 epochs (added afterwards: is 3 epochs far from converged?)
    full-seed1, hn0-seed1   `full` and `hn0` with seed 1 (training noise)
    hn0          num_hard_negatives=0: no hard negatives, in-batch positives only
    hn1          num_hard_negatives=1: the query image only

The frozen EfficientNet outputs are computed once for every image (train and validation) and kept
in OUT/feature-cache (the trainer's `feature_cache_dir`, and `MEGAPAIRS_OFFLINE_FEATURE_CACHE` for
`megapairs evaluate`), so only the first command pays for the image tower.

Finished steps are skipped on a rerun (their timings are kept in OUT/timings.json); `--force`
redoes everything. Results: OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODES = ("composed", "image", "text")
KS = (1, 5, 10)


def arms() -> dict[str, dict[str, object]]:
    return {
        "full": {},
        "frac25": {"train_fraction": 0.25},
        "frac50": {"train_fraction": 0.5},
        "hn0": {"num_hard_negatives": 0},
        "hn1": {"num_hard_negatives": 1},
        # equal-steps variants get max_steps filled in from the full run
        "frac25-eqsteps": {"train_fraction": 0.25},
        "frac50-eqsteps": {"train_fraction": 0.5},
        # added after the others had run, to see whether 3 epochs is far from converged
        "full-10ep": {"epochs": 10},
        # a second training seed for the two claims that matter (trained > zero-shot; hn0 < hn>=1)
        "full-seed1": {"seed": 1},
        "hn0-seed1": {"num_hard_negatives": 0, "seed": 1},
    }


# also scored with --reference-policy remove (the query's own image leaves the gallery)
REMOVE_ARMS = ("zero-shot", "full", "hn0", "hn1")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/mp/runs/train-demo/dataset", help="exported dataset folder")
    p.add_argument("--val", default=None, help="validation triplets for evaluate (default DATA/validation/*.parquet)")
    p.add_argument("--out", default="/tmp/mp/exp/offline-demo")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=34, help="in-training eval (composed R@k) every N steps")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per process (shared CPU: 1)")
    p.add_argument("--arms", default=None, help="comma list (default all)")
    p.add_argument("--force", action="store_true")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    # `megapairs evaluate --benchmark triplets` reads the *.parquet and *.jsonl files of a folder
    # alike (an export writes both, so every row would be read twice; merged queries make that
    # harmless, but the row count doubles): point it at the validation Parquet file itself.
    parts = sorted((data / "validation").glob("*.parquet"))
    val = Path(args.val) if args.val else (parts[0] if len(parts) == 1 else data / "validation")
    cache = out / "feature-cache"
    exe = str(Path(sys.executable).parent / "megapairs")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               MEGAPAIRS_OFFLINE_FEATURE_CACHE=str(cache))
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() and not args.force else {}
    commands: list[str] = [f"export HF_HUB_OFFLINE=1 OMP_NUM_THREADS={args.threads} MKL_NUM_THREADS={args.threads} "
                           f"MEGAPAIRS_OFFLINE_FEATURE_CACHE={shlex.quote(str(cache))}"]

    def run(name: str, cmd: list[str], done: Path) -> float:
        line = " ".join(shlex.quote(c) for c in cmd)
        commands.append(line)
        if done.exists() and name in timings and not args.force:
            print(f"[skip] {name}: {done} exists", flush=True)
            return timings[name]
        print(f"[run] {line}", flush=True)
        t0 = time.perf_counter()
        log = out / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "w") as f:
            rc = subprocess.run(cmd, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
        if rc:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"{name} failed (exit {rc}); log in {log}")
        timings[name] = wall
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"      {wall:.1f} s", flush=True)
        return wall

    def evaluate(name: str, model: str, *extra: str) -> dict:
        dest = out / "eval" / name
        run(f"eval-{name}", [exe, "evaluate", "--benchmark", "triplets", "--data", str(val), "--model", model,
                             "--query-modes", ",".join(MODES), "--out", str(dest),
                             "--cache-dir", str(out / "eval-cache"), "--no-progress", *extra],
            dest / "triplets_val.json")
        return json.loads((dest / "triplets_val.json").read_text())

    results: dict[str, dict] = {"zero-shot": {"eval": evaluate("zero-shot", "offline:default")}}
    common = {"epochs": f"{args.epochs:g}", "batch_size": args.batch_size, "seed": 0, "num_workers": 0,
              "feature_cache_dir": cache, "save_every": 100000, "log_every": 20, "eval_every": args.eval_every}
    todo = arms()
    if args.arms:
        todo = {k: v for k, v in todo.items() if k in args.arms.split(",")}
    full_steps = None
    for name, over in todo.items():
        over = dict(over)
        if name.endswith("-eqsteps"):
            if full_steps is None:
                full_steps = json.loads((out / "runs" / "full" / "train_summary.json").read_text())["steps"]
            over["max_steps"] = full_steps
        run_dir = out / "runs" / name
        extra = [f"{k}={v}" for k, v in {**common, **over}.items()]
        run(f"train-{name}", [exe, "train", "--data", str(data), "--model", "offline:default", "--out",
                              str(run_dir), *extra], run_dir / "train_summary.json")
        summary = json.loads((run_dir / "train_summary.json").read_text())
        if name == "full":
            full_steps = summary["steps"]
        results[name] = {"overrides": over, "summary": summary, "eval": evaluate(name, f"ckpt:{run_dir}")}
    for name in REMOVE_ARMS:
        if name in results:
            model = "offline:default" if name == "zero-shot" else f"ckpt:{out / 'runs' / name}"
            results[name]["eval_remove"] = evaluate(f"{name}-remove", model, "--reference-policy", "remove")
    for name in results:
        results[name]["wall_s"] = {"train": timings.get(f"train-{name}"), "eval": timings.get(f"eval-{name}")}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "commands.sh").write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(commands) + "\n")
    md = tables(results)
    (out / "results.md").write_text(md)
    print(md)
    return 0


def _r(ev: dict, mode: str, k: int) -> str:
    v = ev["metrics"].get(f"{mode}/R@{k}", ev["metrics"].get(f"{mode}/recall@{k}"))
    return "–" if v is None else f"{v:.1f}"


def tables(results: dict[str, dict]) -> str:
    zs = results["zero-shot"]["eval"]
    lines = [f"gallery {zs['gallery_size']} images; queries: "
             + ", ".join(f"{m} {zs['details'].get(f'{m}_queries')}" for m in MODES), ""]
    lines += ["| model | query | R@1 | R@5 | R@10 |", "|---|---|---|---|---|"]
    for name in ("zero-shot", "full"):
        if name in results:
            for mode in MODES:
                cells = " | ".join(_r(results[name]["eval"], mode, k) for k in KS)
                lines.append(f"| {name} | {mode} | {cells} |")
    lines += ["", "| arm | train triplets | steps | composed R@1 | R@5 | R@10 | train wall s | eval wall s |",
              "|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        s = res.get("summary", {})
        w = res["wall_s"]
        lines.append(f"| {name} | {s.get('train_rows', '–')} | {s.get('steps', 0)} | "
                     + " | ".join(_r(res["eval"], "composed", k) for k in KS)
                     + f" | {w['train'] or 0:.0f} | {w['eval'] or 0:.0f} |")
    lines += ["", "reference policy remove (the query's own image is taken out of its ranking):", "",
              "| model | query | R@1 | R@5 | R@10 |", "|---|---|---|---|---|"]
    for name, res in results.items():
        if "eval_remove" in res:
            for mode in ("composed", "image"):
                lines.append(f"| {name} | {mode} | " + " | ".join(_r(res["eval_remove"], mode, k) for k in KS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
