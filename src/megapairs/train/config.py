"""Training configuration (`megapairs train`; overrides like `lr=1e-5 batch_size=256`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from megapairs.configbase import ConfigBase, ConfigError

# Learning rate when `lr` is left unset: the paper's 5e-6 for full CLIP fine-tuning and the MLLM
# (LoRA r=32); the offline retriever trains small fresh heads and needs far more.
DEFAULT_LR = {"clip": 5e-6, "mllm": 5e-6, "offline": 1e-3}
AMP_MODES = ("auto", "bf16", "fp16", "no")
FUSIONS = ("sum", "combiner")


@dataclass
class TrainConfig(ConfigBase):
    """Contrastive training of a retriever on MegaPairs-format triplets.

    Batches hold `batch_size` queries (across all devices); each query brings 1 positive and
    `num_hard_negatives` negatives, the first always its own query image. The loss is InfoNCE of
    each query against every candidate in the batch (all positives and hard negatives).
    """

    model: str = "offline:default"  # retriever spec: clip:..., mllm:..., offline:default, ckpt:...
    data: str = ""  # triplets: Parquet / JSONL file or folder (our export artifact or the released layout)
    eval_data: str = ""  # optional held-out triplets; else about `eval_size` rows split off `data` by image groups
    image_root: str = ""  # base for relative image paths (default: the data file's folder)

    # objective
    temperature: float = 0.02
    # >0: also InfoNCE of each target's caption alone (text query) against the same candidates, weighted
    # so; grounds the text side in what the corpus's words look like (needs `t_caption` in the data)
    caption_loss_weight: float = 0.0
    num_hard_negatives: int = 4  # per query, the first is its own query image; 0: in-batch positives only
    gather_across_devices: bool = True  # candidates from every GPU (all_gather, grads for the local part)

    # batch and schedule
    batch_size: int = 32  # queries per optimizer step, summed over devices
    grad_cache_chunk: int = 0  # >0: embed in chunks of this many rows (GradCache); same loss and gradients
    lr: float | None = None  # None: 5e-6 for clip / mllm, 1e-3 for offline
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05  # of the total steps; linear warm-up, then linear decay to 0
    max_steps: int = 0  # >0 overrides `epochs`
    epochs: float = 1.0
    max_grad_norm: float = 1.0  # 0 disables clipping
    train_fraction: float = 1.0  # <1: train on a seeded subset of the training rows (nested across fractions)

    # what trains
    freeze_vision: bool = False
    freeze_text: bool = False
    train_last_blocks: int = 0  # offline retriever: also train the last N blocks of each tower
    lora_r: int = 0  # >0: LoRA adapters (peft) instead of full fine-tuning
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()  # module-name suffixes; empty: the retriever's defaults
    fusion: str = "sum"  # offline retriever's composed queries: "sum" (score fusion) or "combiner" (trainable)
    combiner_dim: int = 512  # hidden width of the combiner (fusion=combiner)

    # speed
    amp: str = "auto"  # auto: bf16 on CUDA, off on CPU
    gradient_checkpointing: bool | None = None  # None: on for clip / mllm on CUDA
    num_workers: int = 2  # data-loading processes per device
    feature_cache: bool = True  # frozen image tower (offline): its outputs once per distinct image, not per step
    feature_cache_dir: str = ""  # also keep those outputs on disk here (reused by later runs); "": memory only
    device: str = "auto"

    # mllm prompts
    instruction: str | None = None  # task instruction for mllm queries (None: the CIR instruction)

    # bookkeeping
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # steps; 0: only at the end (when there is eval data)
    eval_size: int = 0
    eval_max_rows: int = 2000  # evaluate on a seeded sample of at most this many held-out rows
    save_every: int = 500  # resumable checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2

    NOT_HASHED: ClassVar[tuple[str, ...]] = (
        "grad_cache_chunk", "num_workers", "device", "log_every", "eval_every", "eval_max_rows", "save_every",
        "keep_checkpoints", "feature_cache", "feature_cache_dir",
    )
    # hashed only when set: see ConfigBase.HASHED_IF_SET
    HASHED_IF_SET: ClassVar[dict[str, object]] = {"train_fraction": 1.0, "fusion": "sum", "combiner_dim": 512,
                                                   "caption_loss_weight": 0.0}

    def validate(self) -> None:
        where = getattr(self, "_where", "TrainConfig")
        checks = [
            (self.temperature > 0, "temperature", "must be > 0"),
            (self.caption_loss_weight >= 0, "caption_loss_weight", "must be >= 0"),
            (not (self.caption_loss_weight and self.grad_cache_chunk), "caption_loss_weight",
             "is not supported together with grad_cache_chunk"),
            (self.num_hard_negatives >= 0, "num_hard_negatives", "must be >= 0"),
            (0 < self.train_fraction <= 1, "train_fraction", "must be in (0, 1]"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.grad_cache_chunk >= 0, "grad_cache_chunk", "must be >= 0"),
            (self.lr is None or self.lr > 0, "lr", "must be > 0"),
            (self.weight_decay >= 0, "weight_decay", "must be >= 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)"),
            (self.max_steps >= 0, "max_steps", "must be >= 0"),
            (self.epochs > 0, "epochs", "must be > 0"),
            (self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0"),
            (self.train_last_blocks >= 0, "train_last_blocks", "must be >= 0"),
            (self.lora_r >= 0, "lora_r", "must be >= 0"),
            (self.fusion in FUSIONS, "fusion", f"must be one of {', '.join(FUSIONS)}"),
            (self.combiner_dim >= 1, "combiner_dim", "must be >= 1"),
            (0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)"),
            (self.amp in AMP_MODES, "amp", f"must be one of {', '.join(AMP_MODES)}"),
            (self.num_workers >= 0, "num_workers", "must be >= 0"),
            (self.log_every >= 1, "log_every", "must be >= 1"),
            (self.eval_every >= 0, "eval_every", "must be >= 0"),
            (self.eval_size >= 0, "eval_size", "must be >= 0"),
            (self.eval_max_rows >= 1, "eval_max_rows", "must be >= 1"),
            (self.save_every >= 1, "save_every", "must be >= 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(f"{where}.{name}: {getattr(self, name)!r} {msg}")

    def resolve(self, kind: str, device_type: str) -> "TrainConfig":
        """A copy with the automatic choices made for a retriever family and device type."""
        lr = self.lr if self.lr is not None else DEFAULT_LR.get(kind, 5e-6)
        amp = self.amp
        if amp == "auto":
            amp = "bf16" if device_type == "cuda" else "no"
        gc = self.gradient_checkpointing
        if gc is None:
            gc = device_type == "cuda" and kind in ("clip", "mllm")
        return dataclasses.replace(self, lr=lr, amp=amp, gradient_checkpointing=gc)
