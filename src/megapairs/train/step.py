"""One optimizer step of contrastive training, shared by the trainer and the GPU benchmark.

forward (plain, or grad cache in chunks) -> InfoNCE -> backward -> gradient sync across ranks ->
unscale (fp16) -> clip -> AdamW -> LR schedule -> zero grads.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch

from megapairs.configbase import ConfigError
from megapairs.models.common import to_device
from megapairs.train.distributed import DistInfo, sync_gradients
from megapairs.train.gradcache import grad_cache_backward
from megapairs.train.loss import InfoNCELoss


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases, norms and scalars)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class StepRunner:
    """Owns the optimizer, schedule, loss and precision settings of a run (`cfg` already resolved:
    `lr`, `amp` and `gradient_checkpointing` are concrete)."""

    def __init__(self, model: torch.nn.Module, cfg: Any, total_steps: int, device: torch.device,
                 dist_info: DistInfo | None = None) -> None:
        self.model, self.cfg, self.device, self.dist = model, cfg, device, dist_info or DistInfo()
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("nothing to train: every parameter is frozen")
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                           fused=device.type == "cuda")
        warmup = int(cfg.warmup_ratio * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: linear_schedule(s, warmup, total_steps))
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.loss_fn = InfoNCELoss(cfg.temperature, gather=cfg.gather_across_devices)

    def autocast(self):
        if self.cfg.amp == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def _scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def step(self, batch: dict[str, Any]) -> torch.Tensor:
        """`batch` = {"query": inputs (B, ...), "candidate": inputs (B*G, ...), optional
        "candidate_ids": (B*G,) image ids (copies of a positive are then masked), optional "caption":
        text-only inputs (B, ...) of the targets' captions (the caption loss)}; returns the detached loss."""
        model, cfg = self.model, self.cfg
        query = to_device(batch["query"], self.device)
        cands = to_device(batch["candidate"], self.device)
        ids = batch.get("candidate_ids")
        loss_fn = functools.partial(self.loss_fn, candidate_ids=None if ids is None else ids.to(self.device))
        if cfg.grad_cache_chunk:
            loss = grad_cache_backward(model, query, cands, loss_fn, cfg.grad_cache_chunk,
                                       autocast=self.autocast, scale=self._scale)
        else:
            with self.autocast():
                q = model(**query)  # (B, D)
                c = model(**cands)  # (B*G, D)
                cap = model(**to_device(batch["caption"], self.device)) if "caption" in batch else None  # (B, D)
            loss = loss_fn(q, c)
            if cap is not None and cfg.caption_loss_weight:  # each target's caption finds its own target
                loss = loss + cfg.caption_loss_weight * loss_fn(cap, c, query_mask=batch["caption_mask"])
            self._scale(loss).backward()
            loss = loss.detach()
        if self.dist.enabled:
            sync_gradients(self.params, average=not self.loss_fn.gathers)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss
