"""`hf-vlm:` on a tiny random LLaVA (CLIP vision + Llama text) built in-process: no hub access."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from megapairs.annotate.annotator import Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import GenOptions, GenRequest, build_generator
from megapairs.annotate.roles import PairItem

from .helpers import png

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                 "<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor, PreTrainedTokenizerFast)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    words = ("shared source only target picture both show a the it with in on but same this find red blue cat "
             "dog fence garden outdoors indoors").split()
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "<s>", "</s>", "<image>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                       bos_token_id=2, eos_token_id=3, pad_token_id=0)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_id,
                                                      vision_feature_select_strategy="default"))
    processor = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                     crop_size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    out = tmp_path_factory.mktemp("tiny-llava")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def test_generator_sees_both_images(tiny_llava: Path) -> None:
    g = build_generator(f"hf-vlm:{tiny_llava}", GenOptions())
    assert g.supports_images
    req = GenRequest(prompt="both show", images=(png(1, 40), png(2, 50)), image_labels=("source", "target"),
                     max_tokens=6, seed=1)
    res = asyncio.run(g.generate(req))
    assert res.prompt_tokens >= 2 * 16  # 16 patch tokens per 32x32 image
    assert 1 <= res.completion_tokens <= 6 and isinstance(res.text, str)
    again = asyncio.run(g.generate(req))
    assert again.text == res.text  # greedy: deterministic
    sampled = GenRequest(prompt="both show", images=req.images, max_tokens=6, temperature=1.0, seed=5)
    assert asyncio.run(g.generate(sampled)).text == asyncio.run(g.generate(sampled)).text  # seeded
    g.close()


def test_annotator_with_local_vlm(tiny_llava: Path, tmp_path: Path) -> None:
    cfg = AnnotateConfig.from_dict({"describer": f"hf-vlm:{tiny_llava}", "writer": f"hf-vlm:{tiny_llava}",
                                    "describe_max_tokens": 12, "write_max_tokens": 12, "progress": False,
                                    "writer_attempts": 1})
    items = [PairItem("q1", "t1", "a red cat indoors", "cat", "a blue cat on a fence", "cat", png(1), png(2))]
    with Annotator(cfg, cache_path=tmp_path / "c.sqlite") as a:
        assert a.needs_images
        (row,) = a.annotate_sync(items)
        assert a.stats.requests >= 1  # the random model was asked; its gibberish is validated
    assert row["status"] == "ok" and len(row["instructions"]) >= 3  # via the template fallbacks if needed
    assert row["reason"] or not row["fallback"]  # any fallback says why
    with Annotator(cfg, cache_path=tmp_path / "c.sqlite") as a:
        assert a.annotate_sync(items) == [row] and a.stats.requests == 0  # replayed from the cache
