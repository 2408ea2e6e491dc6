"""LoRA through peft (extra `train`): wrap a Hugging Face model, train only the adapters."""

from __future__ import annotations

import warnings
from typing import Any


def apply_lora(model, cfg: Any, default_targets: tuple[str, ...]):
    """Return `model` wrapped by peft with rank `cfg.lora_r` adapters on `cfg.lora_targets`
    (module-name suffixes; empty -> the retriever's defaults). Base weights are frozen."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"LoRA needs peft ({e}); install with pip install 'megapairs[train]'") from None
    targets = list(cfg.lora_targets) or list(default_targets)
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, bias="none")
    with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)
