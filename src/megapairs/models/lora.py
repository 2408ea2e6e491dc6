"""LoRA through peft (extra `train`): wrap a Hugging Face model, train only the adapters."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

from megapairs.configbase import ConfigError


def lora_modules(model, targets: list[str], towers: Mapping[str, tuple[str, ...]], frozen: set[str]) -> list[str]:
    """Full names of the modules whose name ends in one of `targets` (module-name suffixes), leaving
    out every module under a frozen tower's prefixes (`towers["vision"]` = ("vision_model", ...))."""
    blocked = tuple(p for tower in frozen for p in towers.get(tower, ()))
    names = []
    for name, _ in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        if any(name == b or name.startswith(b + ".") for b in blocked):
            continue
        names.append(name)
    return names


def apply_lora(model, cfg: Any, default_targets: tuple[str, ...],
               towers: Mapping[str, tuple[str, ...]] | None = None):
    """Return `model` wrapped by peft with rank `cfg.lora_r` adapters on `cfg.lora_targets`
    (module-name suffixes; empty -> the retriever's defaults). Base weights are frozen.

    `towers` maps "vision" / "text" to the module-name prefixes of that tower. With
    `cfg.freeze_vision` / `cfg.freeze_text` no adapter goes into the frozen tower, so it stays
    exactly as loaded; a retriever that cannot say where its towers are refuses the combination."""
    frozen = {t for t, on in (("vision", getattr(cfg, "freeze_vision", False)),
                              ("text", getattr(cfg, "freeze_text", False))) if on}
    if frozen and towers is None:
        raise ConfigError("lora_r > 0 with freeze_vision / freeze_text is not supported for this retriever; "
                          "drop the freeze options or set lora_r 0")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"LoRA needs peft ({e}); install with pip install 'megapairs[train]'") from None
    targets = list(cfg.lora_targets) or list(default_targets)
    modules = lora_modules(model, targets, towers or {}, frozen)
    if not modules:
        raise ConfigError(f"no module matches the LoRA targets {targets} outside the frozen tower(s) "
                          f"{sorted(frozen)}; nothing would train")
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=modules, bias="none")
    with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)
