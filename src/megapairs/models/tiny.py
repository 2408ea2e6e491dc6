"""Tiny random twins of the heavy retrievers, written as real checkpoint folders.

For tests, benchmarks and dry runs: the same code paths as the released models (config.json,
safetensors, tokenizer files, preprocessor config), built in-process with no network. The weights
are random, so the embeddings mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Characters the byte-level CLIP vocabulary is built from, plus a few merges so BPE is exercised.
_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("o", "n</w>")]


def tiny_clip_tokenizer(model_max_length: int = 77):
    """A byte-level CLIP BPE tokenizer with a ~520-token vocabulary."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for a, b in _MERGES:
        vocab[a + b] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(_MERGES), model_max_length=model_max_length)


def make_tiny_clip(folder: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                   image_size: int = 32, patch: int = 8, projection: int = 16, max_positions: int = 77,
                   seed: int = 0) -> Path:
    """Write a random CLIPModel checkpoint folder (weights, tokenizer, preprocessor config)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    folder = Path(folder)
    tok = tiny_clip_tokenizer(max_positions)
    bos, eos = tok.convert_tokens_to_ids("<|startoftext|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    text = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                num_attention_heads=heads, max_position_embeddings=max_positions, bos_token_id=bos,
                eos_token_id=eos, pad_token_id=eos)
    vision = dict(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                  num_attention_heads=heads, image_size=image_size, patch_size=patch)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


def tiny_llava_tokenizer():
    """A small byte-level BPE tokenizer with the BGE-VL-MLLM special tokens; left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<instruct>", "<query>"]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["[INST] retrieve the target image that best meets the combined criteria [/INST]",
              "make the background dark, as if the camera has taken the photo at night"] * 8
    tk.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", padding_side="left",
                                   extra_special_tokens={"image_token": "<image>"})


def make_tiny_llava(folder: str | Path, *, hidden: int = 32, layers: int = 2, image_size: int = 32,
                    patch: int = 8, seed: int = 0) -> Path:
    """Write a random LlavaNextForConditionalGeneration folder (CLIP ViT + Mistral) and its processor."""
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        MistralConfig,
    )

    folder = Path(folder)
    tok = tiny_llava_tokenizer()
    grid = [[image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size],
            [2 * image_size, 2 * image_size]]
    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                              num_attention_heads=2, image_size=image_size, patch_size=patch)
    text = MistralConfig(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                         max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    cfg = LlavaNextConfig(vision_config=vision, text_config=text,
                          image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grid,
                          vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    LlavaNextForConditionalGeneration(cfg).save_pretrained(folder)
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": image_size},
                                                 crop_size={"height": image_size, "width": image_size},
                                                 image_grid_pinpoints=grid)
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                       vision_feature_select_strategy="default",
                       num_additional_image_tokens=1).save_pretrained(folder)
    return folder
