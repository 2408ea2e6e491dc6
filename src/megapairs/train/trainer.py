"""The contrastive trainer: AdamW, linear warm-up + decay, InfoNCE, optional grad cache, DDP-style
multi-GPU (torchrun / accelerate launch), resumable checkpoints, model card and loss plot.

Output folder::

    <out>/
      train_config.json     # the resolved config and its hash (a resumed run must match it)
      metrics.jsonl         # one row per step: step, loss, lr (+ eval rows)
      checkpoints/          # resumable state (see train/checkpoint.py)
      final/                # the trained retriever (load with ckpt:<out>, or SentenceTransformer(final,
                            #   trust_remote_code=True)), README.md card, loss.png
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from megapairs.artifacts import atomic_write_json
from megapairs.configbase import ConfigError
from megapairs.models.common import EmbeddingRetriever
from megapairs.train import checkpoint as ckpt
from megapairs.train.config import TrainConfig
from megapairs.train.data import (
    StepSampler,
    TripletCollator,
    TripletDataset,
    TripletTable,
    grouped_holdout,
    load_triplets,
    subsample_rows,
    validation_split,
)
from megapairs.train.distributed import all_mean, barrier, setup
from megapairs.models.feature_cache import CachedTripletCollator, ImageFeatureCache, supports_feature_cache
from megapairs.train.step import StepRunner, linear_schedule, param_groups  # noqa: F401 (re-exported)

log = logging.getLogger("megapairs")
DATA_CACHE = "data"  # under the run folder: the training rows as memory-mapped Arrow files


@dataclass
class TrainResult:
    out: Path
    final_model: Path
    steps: int
    final_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = 0.0
    history: list[tuple[int, float]] = field(default_factory=list)


class Trainer:
    """`Trainer(cfg, out).fit()`. Pass `model` to train an already-built retriever (tests, notebooks);
    `on_step(step, loss)` is called after every optimizer step (it may raise to stop the run)."""

    def __init__(self, cfg: TrainConfig, out: str | Path, *, model: EmbeddingRetriever | None = None,
                 overwrite: bool = False, on_step: Callable[[int, float], None] | None = None) -> None:
        if not cfg.data:
            raise ConfigError(f"{cfg.where}.data: no training data given (--data PATH)")
        self.cfg = cfg
        self.out = Path(out)
        self.model = model
        self.overwrite = overwrite
        self.on_step = on_step

    # -- setup -----------------------------------------------------------------------------------
    def _claim_output(self) -> None:
        path = self.out / "train_config.json"
        digest = self.cfg.config_hash()
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("config_hash") != digest:
                if not self.overwrite:
                    raise ConfigError(
                        f"{self.out} holds a run with a different configuration (hash {old.get('config_hash')}, "
                        f"now {digest}); use another --out, or --overwrite to discard it")
                for name in ("checkpoints", "final", "metrics.jsonl"):
                    target = self.out / name
                    shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"config_hash": digest, "config": self.cfg.to_dict()})

    def _build(self) -> None:
        cfg = self.cfg
        self.dist, self.device = setup(cfg.device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        if self.dist.is_main:
            self._claim_output()
        barrier()
        if self.model is None:
            from megapairs.models.base import load_retriever

            self.model = load_retriever(cfg.model, device=str(self.device))  # type: ignore[assignment]
        model = self.model
        if cfg.instruction is not None and hasattr(model, "instruction"):
            model.instruction = cfg.instruction
        if cfg.fusion == "combiner" and not hasattr(model, "enable_combiner"):
            raise ConfigError(f"{cfg.where}.fusion: 'combiner' is for the offline retriever; {model.spec} "
                              "keeps its own fusion (use fusion=sum)")
        self.rcfg = cfg.resolve(model.kind, self.device.type)
        model.prepare_for_training(self.rcfg)
        model.to(self.device)
        model.train()
        if self.dist.enabled:  # identical starting weights everywhere (LoRA init draws random numbers)
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        torch.distributed.broadcast(p, 0)

        # data
        # rank 0 writes the rows once as Arrow files under the run folder; every rank maps them
        cache = self.out / DATA_CACHE
        data = load_triplets(cfg.data, cfg.image_root or None, cache=cache / "train.arrow")
        holdout = grouped_holdout(data, cfg.eval_size, cfg.seed)  # no image shared with training rows
        train_rows, eval_rows = holdout.train_rows, holdout.eval_rows
        if cfg.eval_size:
            log.info("held out %d of %d rows by image groups (%d on the border dropped)", len(eval_rows),
                     len(data), holdout.dropped)
        train_rows = subsample_rows(train_rows, cfg.train_fraction, cfg.seed)
        self.data = data
        use_cache = cfg.feature_cache and supports_feature_cache(model)
        captions = cfg.caption_loss_weight > 0
        if captions and (missing := data.rows_without_caption(train_rows)):
            if missing == len(train_rows):
                raise ConfigError(f"{cfg.where}.caption_loss_weight: none of the {len(train_rows)} training triplets "
                                  "has a target caption (t_caption)", hint="train on a megapairs export of a "
                                  "captioned corpus (it writes t_caption), or set caption_loss_weight=0")
            log.warning("caption term: %d of %d training triplets have no target caption; they count in the "
                        "instruction loss only", missing, len(train_rows))
        self.dataset = TripletDataset(data, train_rows, num_hard_negatives=cfg.num_hard_negatives, seed=cfg.seed,
                                      load_images=not use_cache, exclude=holdout.val_images, captions=captions)
        self.eval_exclude: frozenset = frozenset()  # images training touches: kept out of the held-out gallery
        self.eval_set: tuple[TripletTable, np.ndarray] | None = None
        if cfg.eval_data:
            ev = load_triplets(cfg.eval_data, cfg.image_root or None, split=None, cache=cache / "eval.arrow")
            self.eval_set = (ev, np.arange(len(ev)))
        elif len(eval_rows):
            self.eval_set = (data, eval_rows)
            self.eval_exclude = holdout.train_images
        else:  # an exported dataset's own validation split, if it has one
            ev = validation_split(cfg.data, cfg.image_root or None, cache=cache / "validation.arrow")
            if ev is not None:
                self.eval_set = (ev, np.arange(len(ev)))
        if self.eval_set is not None and len(self.eval_set[1]) > cfg.eval_max_rows:
            ev, rows = self.eval_set
            pick = np.random.default_rng([cfg.seed, 99]).choice(len(rows), cfg.eval_max_rows, replace=False)
            self.eval_set = (ev, np.sort(rows[pick]))
        if len(train_rows) < cfg.batch_size:
            raise ConfigError(f"{cfg.where}.batch_size: {cfg.batch_size} exceeds the {len(train_rows)} training "
                              "triplets", hint="lower batch_size, or train on more triplets")
        self.feature_cache: ImageFeatureCache | None = None
        if use_cache:  # every image the run can touch: the training rows' and the held-out rows'
            refs = _row_images(data, train_rows)
            if self.eval_set is not None:
                refs += _row_images(*self.eval_set)
            self.feature_cache = ImageFeatureCache.build(model, refs, cache_dir=cfg.feature_cache_dir or None)
        self.steps_per_epoch = len(train_rows) // cfg.batch_size
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))

        self.runner = StepRunner(model, self.rcfg, self.total_steps, self.device, self.dist)
        self.params, self.loss_fn = self.runner.params, self.runner.loss_fn
        self.optimizer, self.scheduler, self.scaler = self.runner.optimizer, self.runner.scheduler, self.runner.scaler

    def _loader(self, start_step: int) -> torch.utils.data.DataLoader:
        cfg = self.cfg
        sampler = StepSampler(len(self.dataset), cfg.batch_size, seed=cfg.seed, start_step=start_step,
                              total_steps=self.total_steps, rank=self.dist.rank, world_size=self.dist.world_size)
        if cfg.num_workers:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, collate_fn=self._collator(),
            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if cfg.num_workers else None,
            # own generator: creating the iterator must not consume the global RNG (resume parity)
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def _collator(self) -> TripletCollator | CachedTripletCollator:
        if self.feature_cache is not None:
            return CachedTripletCollator(self.model.processor(), self.feature_cache)
        return TripletCollator(self.model.processor())

    def step(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.runner.step(batch)

    # -- the run ---------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self._build()
        cfg, model = self.cfg, self.model
        history: list[tuple[int, float]] = []
        start = 0
        resume_from = ckpt.latest(self.out)
        if resume_from is not None:
            state = ckpt.restore(resume_from, model=model, optimizer=self.optimizer, scheduler=self.scheduler,
                                 scaler=self.scaler, dist_info=self.dist, device=self.device)
            start = int(state["step"])
            history = [tuple(h) for h in state.get("history", [])]  # type: ignore[misc]
            log.info("resuming from %s (step %d of %d)", resume_from, start, self.total_steps)
        if self.dist.is_main:
            self._trim_metrics(start)
        trainable = sum(p.numel() for p in self.params)
        log.info("training %s: %d steps of %d queries x %d candidates (%d images per step), "
                 "%.2fM trainable parameters", model.spec, self.total_steps, cfg.batch_size,
                 1 + cfg.num_hard_negatives, cfg.batch_size * (2 + cfg.num_hard_negatives), trainable / 1e6)

        pending: list[tuple[int, torch.Tensor, float]] = []
        eval_metrics: dict[str, float] = {}
        first_end: float | None = None  # steady-state throughput: from the end of the first step on
        window_start = time.perf_counter()
        for step, batch in enumerate(self._loader(start), start=start):
            lr = self.scheduler.get_last_lr()[0]  # the rate this step used
            loss = self.step(batch)
            pending.append((step + 1, loss, lr))
            done = step + 1
            if self.on_step is not None or done % cfg.log_every == 0 or done == self.total_steps \
                    or done % cfg.save_every == 0:
                self._flush(pending, history)
            if (first_end is None or done == self.total_steps) and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if first_end is None:  # the first step pays warm-up costs (allocations, workers)
                first_end = time.perf_counter()
            last_end = time.perf_counter()
            if done % cfg.log_every == 0 or done == self.total_steps:
                elapsed = time.perf_counter() - window_start
                window_start = time.perf_counter()
                rate = cfg.batch_size * min(cfg.log_every, done - start) / max(elapsed, 1e-9)
                log.info("step %d/%d loss %.4f lr %.3g %.1f queries/s", done, self.total_steps, history[-1][1],
                         self.scheduler.get_last_lr()[0], rate)
            if cfg.eval_every and done % cfg.eval_every == 0 and done != self.total_steps and self.eval_set:
                eval_metrics = self._evaluate(done)
            if done % cfg.save_every == 0 or done == self.total_steps:
                ckpt.save(self.out, done, model=model, optimizer=self.optimizer, scheduler=self.scheduler,
                          scaler=self.scaler, state={"history": history, "config_hash": cfg.config_hash()},
                          dist_info=self.dist, device=self.device, keep=cfg.keep_checkpoints)
            if self.on_step is not None:
                self.on_step(done, history[-1][1])
        if self.eval_set:
            eval_metrics = self._evaluate(self.total_steps)
        timed = self.total_steps - start - 1
        samples_per_s = cfg.batch_size * timed / (last_end - first_end) if timed > 0 and first_end else 0.0
        return self._finish(history, eval_metrics, samples_per_s)

    def _flush(self, pending: list[tuple[int, torch.Tensor, float]], history: list[tuple[int, float]]) -> None:
        """Turn the pending loss tensors into numbers (one device sync) and append them to the log."""
        if not pending:
            return
        values = torch.stack([v for _, v, _ in pending]).float()
        if self.dist.enabled and not self.loss_fn.gathers:
            values = all_mean(values)
        rows = []
        for (s, _, lr), v in zip(pending, values.tolist()):
            history.append((s, v))
            rows.append({"step": s, "loss": v, "lr": lr})
        pending.clear()
        if self.dist.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)

    def _trim_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        kept = [r for r in rows if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def _evaluate(self, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.dist.is_main and self.eval_set is not None:
            from megapairs.train.evaluate import recall_on_triplets

            data, rows = self.eval_set
            metrics = recall_on_triplets(self.model, data, rows, features=self.feature_cache,
                                         exclude=self.eval_exclude, seed=self.cfg.seed)
            log.info("eval at step %d: %s", step, " ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "eval": metrics}) + "\n")
            self.model.train()
        barrier()
        return metrics

    def _finish(self, history: list[tuple[int, float]], metrics: dict[str, float], samples_per_s: float) -> TrainResult:
        final = self.out / "final"
        model = self.model
        tail = [v for _, v in history[-10:]]
        final_loss = float(np.mean(tail)) if tail else float("nan")
        if self.dist.is_main:
            from megapairs.models.st_module import write_sentence_transformers_files
            from megapairs.train.card import plot_loss, write_card

            model.finalize_training()
            if final.exists():
                shutil.rmtree(final)
            model.save_pretrained(final)
            write_sentence_transformers_files(final, model.kind)  # also SentenceTransformer(final, ...)
            plot_loss(history, final / "loss.png")
            summary = {
                "steps": self.total_steps, "final_loss": final_loss, "eval": metrics,
                "samples_per_s": samples_per_s, "world_size": self.dist.world_size,
                "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
                "train_rows": len(self.dataset), "eval_rows": int(len(self.eval_set[1])) if self.eval_set else 0,
                "feature_cache_images": len(self.feature_cache) if self.feature_cache is not None else 0,
                "trainable_parameters": sum(p.numel() for p in self.params),
                "total_parameters": sum(p.numel() for p in model.parameters()),
            }
            atomic_write_json(self.out / "train_summary.json", summary)
            write_card(final / "README.md", cfg=self.rcfg, model=model, data=self.data, summary=summary)
        barrier()
        return TrainResult(self.out, final, self.total_steps, final_loss, metrics, samples_per_s, history)


def _row_images(data: TripletTable, rows: np.ndarray) -> list[Any]:
    """Every image reference in `rows`: queries, positives and hard negatives."""
    refs: list[Any] = []
    for i in map(int, rows):
        row = data.row(i)
        refs += [row["q_img"], row["t_img"], *(row["hns"] or [])]
    return refs


def train(cfg: TrainConfig, out: str | Path, **kwargs: Any) -> TrainResult:
    return Trainer(cfg, out, **kwargs).fit()
