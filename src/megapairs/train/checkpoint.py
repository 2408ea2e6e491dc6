"""Resumable training checkpoints.

    <out>/checkpoints/
      step-00000500/
        trainable.safetensors   # every parameter with requires_grad (LoRA adapters, heads, or all)
        optimizer.pt            # AdamW state (tensors and plain values only)
        schedule.pt             # LR scheduler (+ fp16 grad scaler) state (plain values only)
        rng-rank0.json ...      # python / numpy / torch / CUDA RNG states as JSON, one file per rank
        state.json              # step, loss history, config hash
      latest                    # name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder and renamed when complete, so a crash
never leaves a half-written one under a real name. The data position is not stored: the sampler
derives it from the step (see `StepSampler`). Nothing is unpickled on resume: the `.pt` files are
read with `torch.load(weights_only=True)` (tensors, numbers, strings, lists, tuples and dicts only)
and the RNG states are JSON.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megapairs.artifacts import ArtifactError, atomic_write_bytes, atomic_write_json
from megapairs.train.distributed import DistInfo, barrier

log = logging.getLogger("megapairs")

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state as JSON-ready values (lists of ints, strings, floats)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


def latest(out: Path) -> Path | None:
    pointer = Path(out) / CHECKPOINTS / LATEST
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def save(out: Path, step: int, *, model, optimizer, scheduler, scaler, state: dict[str, Any],
         dist_info: DistInfo, device: torch.device, keep: int) -> Path:
    from safetensors.torch import save_file

    root = Path(out) / CHECKPOINTS
    name = f"step-{step:08d}"
    final, tmp = root / name, root / f".{name}.tmp"
    if dist_info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    atomic_write_json(tmp / f"rng-rank{dist_info.rank}.json", rng_state(device))
    if dist_info.is_main:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state().items()}
        save_file(tensors, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None},
                   tmp / "schedule.pt")
        atomic_write_json(tmp / "state.json", {**state, "step": step})
    barrier()
    if dist_info.is_main:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_bytes(root / LATEST, (name + "\n").encode())
        done = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def restore(path: Path, *, model, optimizer, scheduler, scaler, dist_info: DistInfo,
            device: torch.device) -> dict[str, Any]:
    from safetensors.torch import load_file

    path = Path(path)
    tensors = load_file(str(path / "trainable.safetensors"), device=str(device))
    expected = set(model.trainable_state())
    missing = expected - set(tensors)
    if missing:
        raise ArtifactError(f"checkpoint {path} lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}; "
                            "was it made with a different model or freeze/LoRA configuration? Use the same config, "
                            "or a new --out (or --overwrite) to start afresh")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k in expected:
            params[k].copy_(tensors[k])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    sched = torch.load(path / "schedule.pt", weights_only=True)
    scheduler.load_state_dict(sched["scheduler"])
    if scaler is not None and sched.get("scaler"):
        scaler.load_state_dict(sched["scaler"])
    rng_file = path / f"rng-rank{dist_info.rank}.json"
    if rng_file.exists():
        set_rng_state(json.loads(rng_file.read_text()), device)
    elif (path / f"rng-rank{dist_info.rank}.pt").exists():  # written before the JSON format; never unpickled
        log.warning("%s stores its RNG state as a pickle; resuming without it (random draws may differ)", path)
    return json.loads((path / "state.json").read_text())
