"""Model card (README.md) and loss plot for a trained retriever, generated from the run's facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def plot_loss(history: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if history:
        steps = np.array([s for s, _ in history])
        loss = np.array([v for _, v in history])
        ax.plot(steps, loss, lw=0.8, alpha=0.5, label="loss")
        w = max(1, len(loss) // 50)
        if w > 1:
            smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1:], smooth, lw=1.5, label=f"mean of {w}")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _data_facts(data) -> list[str]:
    lines = [f"- source: `{data.source}` ({len(data)} triplets)"]
    manifest = Path(data.source) / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        lines.append(f"- artifact: kind `{m.get('kind')}`, config hash `{m.get('config_hash')}`, "
                     f"{m.get('rows')} rows, code version {m.get('code_version')}")
    return lines


def write_card(path: Path, *, cfg, model, data, summary: dict[str, Any]) -> None:
    import torch
    import transformers

    from megapairs import __version__

    k = cfg.num_hard_negatives
    trained = summary["trainable_parameters"]
    total = summary["total_parameters"]
    frozen = [n for n, f in (("vision", cfg.freeze_vision), ("text", cfg.freeze_text)) if f]
    if cfg.lora_r:
        what = f"LoRA r={cfg.lora_r}, alpha={cfg.lora_alpha} on {list(cfg.lora_targets) or 'default targets'} (merged)"
        what += f"; no adapters in the frozen tower(s): {', '.join(frozen)}" if frozen else ""
    elif model.kind == "offline":
        what = "fusion heads" + (f" + last {cfg.train_last_blocks} tower blocks" if cfg.train_last_blocks else
                                 " (towers frozen)")
    else:
        what = "full fine-tuning" + (f" (frozen: {', '.join(frozen)})" if frozen else "")
    ev = summary.get("eval") or {}
    metrics = "\n".join(f"| {k_} | {v:.4f} |" for k_, v in ev.items()) or "| (no held-out data) | |"
    usage = (
        "```python\nfrom megapairs.models.base import load_retriever\n\n"
        f"model = load_retriever(\"ckpt:{path.parent}\")\n"
        "q = model.encode(images=\"query.png\", text=\"make it night\")  # (1, D)\n"
        "c = model.encode(images=[\"a.png\", \"b.png\"])                # (2, D)\n"
        "scores = q @ c.T\n```\n"
    )
    if model.kind == "clip":
        usage += (
            "\nThe folder is also a drop-in BGE-VL-CLIP checkpoint:\n\n```python\n"
            "from transformers import AutoModel\n\n"
            f"model = AutoModel.from_pretrained(\"{path.parent}\", trust_remote_code=True)\n"
            f"model.set_processor(\"{path.parent}\")\n"
            "q = model.encode(images=\"query.png\", text=\"make it night\")\n```\n"
        )
    text = f"""# Composed-image retriever trained with megapairs

- base model: `{cfg.model}` ({model.kind})
- trained: {what}; {trained / 1e6:.2f}M of {total / 1e6:.2f}M parameters
- embedding: L2-normalised; image+text queries fuse both inputs, candidates are images

## Data

{chr(10).join(_data_facts(data))}
- used for training: {summary['train_rows']} triplets; held out for evaluation: {summary['eval_rows']}
- per query and step: one instruction sampled from its list, 1 positive, {k} hard negatives
  (the query image first)

## Recipe

| setting | value |
|---|---|
| loss | InfoNCE, one direction (query -> all in-batch candidates), temperature {cfg.temperature} |
| batch | {cfg.batch_size} queries x {1 + k} candidates = {cfg.batch_size * (1 + k)} candidates per step |
| cross-device candidates | {cfg.gather_across_devices} (world size {summary['world_size']}) |
| optimizer | AdamW, lr {cfg.lr:g}, weight decay {cfg.weight_decay}, grad-norm clip {cfg.max_grad_norm} |
| schedule | linear warm-up {cfg.warmup_ratio:.0%} of steps, then linear decay; {summary['steps']} steps |
| precision | {cfg.amp}; gradient checkpointing {cfg.gradient_checkpointing} |
| grad cache chunk | {cfg.grad_cache_chunk or 'off'} |
| seed | {cfg.seed} |
| hardware | {summary['device']} x {summary['world_size']}; {summary['samples_per_s']:.1f} queries/s |
| software | megapairs {__version__}, torch {torch.__version__}, transformers {transformers.__version__} |

## Final metrics

| metric | value |
|---|---|
| train loss (mean of last 10 steps) | {summary['final_loss']:.4f} |
{metrics}

![loss](loss.png)

## Usage

{usage}
"""
    path.write_text(text)
