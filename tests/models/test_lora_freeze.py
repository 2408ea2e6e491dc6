"""LoRA honours freeze_vision / freeze_text: no adapter goes into a frozen tower."""

from types import SimpleNamespace

import pytest

from megapairs.configbase import ConfigError
from megapairs.models.base import load_retriever


def _cfg(**kw):
    base = dict(lora_r=4, lora_alpha=8.0, lora_dropout=0.0, lora_targets=(), freeze_vision=False,
                freeze_text=False, gradient_checkpointing=False)
    base.update(kw)
    return SimpleNamespace(**base)


def _trainable(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("frozen,other", [("vision", "text"), ("text", "vision")])
def test_clip_lora_skips_the_frozen_tower(clip_dir, frozen, other):
    model = load_retriever(f"clip:{clip_dir}", device="cpu")
    model.prepare_for_training(_cfg(**{f"freeze_{frozen}": True}))
    names = _trainable(model)
    assert names and all("lora_" in n for n in names)
    assert not any(f"{frozen}_model" in n for n in names)  # the frozen tower stays as loaded
    assert any(f"{other}_model" in n for n in names)


def test_clip_lora_with_both_towers_frozen_is_refused(clip_dir):
    model = load_retriever(f"clip:{clip_dir}", device="cpu")
    with pytest.raises(ConfigError, match="nothing would train"):
        model.prepare_for_training(_cfg(freeze_vision=True, freeze_text=True))


def test_mllm_lora_skips_the_frozen_language_model(llava_dir):
    model = load_retriever(f"mllm:{llava_dir}", device="cpu")
    model.prepare_for_training(_cfg(freeze_text=True))
    names = _trainable(model)
    assert names and not any("language_model" in n for n in names)
    assert any("vision_tower" in n for n in names)
