"""A small, fully offline retriever for the search tests: a randomly initialised tiny CLIP.

It implements the `megapairs.models.base.Retriever` protocol without the model registry:
- images -> CLIP image tower; text -> CLIP text tower; both -> sum of the two, renormalised;
- preprocessing in NumPy/PIL (`megapairs.embed.backends.preprocess.Preprocess`);
- a word-level tokenizer built in-process (no files, no hub).

`seed` changes the weights, and therefore `preprocess_id`: two toys with different seeds stand in
for "a different model" in the mismatch tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from megapairs.embed.backends.preprocess import Preprocess

WORDS = (
    "a an the of in on with and or but make it is are be this that more less no not "
    "red green blue yellow black white orange purple pink brown grey gray dark light bright "
    "circle square triangle shape big small large tiny round sharp left right top bottom "
    "picture photo image same different change add remove instead show find one two three"
).split()


def build_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


class ToyClipRetriever:
    def __init__(self, seed: int = 0, image_size: int = 32, dim: int = 16) -> None:
        from transformers import CLIPConfig, CLIPModel

        self.tokenizer = build_tokenizer()
        cfg = CLIPConfig(
            text_config=dict(vocab_size=len(self.tokenizer), hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32,
                             bos_token_id=2, eos_token_id=3, pad_token_id=0),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=image_size, patch_size=8),
            projection_dim=dim,
        )
        torch.manual_seed(seed)
        self.model = CLIPModel(cfg).eval()
        self.pre = Preprocess(crop=(image_size, image_size), shortest_edge=image_size,
                              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        self.seed = seed
        self.dim = dim
        self.spec = f"toyclip:{seed}"

    @property
    def preprocess_id(self) -> str:
        return f"toyclip-seed{self.seed}-{self.pre.key}"

    # -- encoding -------------------------------------------------------------------------------
    @staticmethod
    def _as_list(x) -> list:
        if x is None:
            return []
        if isinstance(x, (str, Path, Image.Image)):
            return [x]
        return list(x)

    def pixels(self, images: Sequence) -> torch.Tensor:
        arrays = []
        for im in images:
            if not isinstance(im, Image.Image):
                with Image.open(im) as f:
                    im = f.convert("RGB")
            arrays.append(self.pre(im))
        return torch.from_numpy(np.stack(arrays))  # (B, 3, H, W)

    @torch.inference_mode()
    def encode(self, images=None, text=None) -> torch.Tensor:
        imgs, texts = self._as_list(images), self._as_list(text)
        if not imgs and not texts:
            raise ValueError("encode needs images, text, or both")
        if imgs and texts and len(imgs) != len(texts):
            if len(imgs) == 1:
                imgs = imgs * len(texts)
            elif len(texts) == 1:
                texts = texts * len(imgs)
            else:
                raise ValueError(f"{len(imgs)} images but {len(texts)} texts")
        out = None
        if imgs:
            out = self.model.get_image_features(pixel_values=self.pixels(imgs))
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            out = F.normalize(out, dim=-1)  # (B, D)
        if texts:
            tok = self.tokenizer([str(t) for t in texts], padding=True, truncation=True, max_length=32,
                                 return_tensors="pt")
            t = self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
            t = F.normalize(t if isinstance(t, torch.Tensor) else t.pooler_output, dim=-1)  # (B, D)
            out = t if out is None else out + t
        return F.normalize(out.float(), dim=-1)


def make_images(folder: Path, n: int = 12, size: int = 48) -> list[Path]:
    """n small distinct pictures (coloured shapes on coloured backgrounds), PNG and JPEG mixed."""
    from PIL import ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    paths = []
    for i in range(n):
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        fg = tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (size, size), bg)
        d = ImageDraw.Draw(im)
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = x0 + int(rng.integers(8, size // 2)), y0 + int(rng.integers(8, size // 2))
        (d.ellipse if i % 2 else d.rectangle)((x0, y0, x1, y1), fill=fg)
        noise = rng.integers(-20, 20, (size, size, 3))
        im = Image.fromarray(np.clip(np.asarray(im, np.int16) + noise, 0, 255).astype("uint8"))
        p = folder / (f"img{i:03d}.png" if i % 3 else f"img{i:03d}.jpg")
        im.save(p)
        paths.append(p)
    return paths
