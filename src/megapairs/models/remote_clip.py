"""BGE-VL-compatible CLIP embedding model, written for megapairs (MIT).

`megapairs` copies this file into every CLIP checkpoint it saves, as `modeling_MMRet_CLIP.py`, and
points `config.json`'s `auto_map` at it, so a saved folder is a drop-in replacement for the released
BGE-VL-base / BGE-VL-large folders:

    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    model.set_processor(folder)
    q = model.encode(images="query.png", text="make the background dark")   # (1, D)
    c = model.encode(images=["a.png", "b.png"])                              # (2, D)
    scores = q @ c.T

The file is self-contained (torch, transformers, Pillow only) and works with transformers 4.4x and
5.x. Embeddings:
- images only -> normalize(image projection)
- text only   -> normalize(text projection)
- both        -> normalize(image projection + text projection), the projections un-normalised.

Differences from the original remote code, all additive: PIL images are accepted besides paths;
text longer than the tower limit is truncated with a warning instead of raising; a single image
may be paired with several texts (and vice versa).
"""

import logging
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoTokenizer
from transformers import CLIPModel as _BaseCLIPModel

logger = logging.getLogger(__name__)

ImageInput = Union[str, Image.Image]


def _projection(output) -> torch.Tensor:
    # transformers 5 returns an output object from get_*_features (projection in pooler_output).
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _load_image_processor(name: str):
    try:  # transformers 5: the PIL backend needs no torchvision
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:  # transformers 4.x: CLIPImageProcessor is the PIL/NumPy one
        from transformers import CLIPImageProcessor as processor_class
    return processor_class.from_pretrained(name)


def _to_list(value):
    if value is None:
        return None
    if isinstance(value, (str, Image.Image)):
        return [value]
    return list(value)


class CLIPModel(_BaseCLIPModel):
    """Hugging Face CLIPModel plus `set_processor`, `data_process` and `encode*`."""

    def set_processor(self, model_name: str, max_text_length: Optional[int] = None) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.image_processor = _load_image_processor(model_name)
        try:
            from transformers import CLIPProcessor

            self.processor = CLIPProcessor(image_processor=self.image_processor, tokenizer=self.tokenizer)
        except Exception:  # only a convenience handle; encode() does not use it
            self.processor = None
        limit = int(self.config.text_config.max_position_embeddings)
        self.max_text_length = min(int(max_text_length or limit), limit)

    # -- inputs ----------------------------------------------------------------------------------
    def _pixels(self, images: Sequence[ImageInput]) -> torch.Tensor:
        opened = []
        for im in images:
            if isinstance(im, Image.Image):
                opened.append(im.convert("RGB"))
            else:
                with Image.open(im) as f:
                    opened.append(f.convert("RGB"))
        pixels = self.image_processor(images=opened, return_tensors="pt")["pixel_values"]
        return pixels.to(device=self.device, dtype=self.dtype)

    def _tokens(self, texts: List[str]):
        if not hasattr(self, "tokenizer"):
            raise RuntimeError("call model.set_processor(model_name) before encoding")
        limit = self.max_text_length
        lengths = [len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]]
        too_long = sum(n > limit for n in lengths)
        if too_long:
            logger.warning("%d text(s) longer than %d tokens were truncated", too_long, limit)
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return {k: v.to(self.device) for k, v in tokens.items()}

    def data_process(self, images=None, text=None):
        """-> (pixel_values or None, token dict or None, "images" | "text" | "multimodal")."""
        if not hasattr(self, "image_processor"):
            raise RuntimeError("call model.set_processor(model_name) before encoding")
        images, texts = _to_list(images), _to_list(text)
        if images is None and texts is None:
            raise ValueError("give images, text, or both")
        if images is not None and texts is not None and len(images) != len(texts):
            if len(images) == 1:
                images = images * len(texts)
            elif len(texts) == 1:
                texts = texts * len(images)
            else:
                raise ValueError(f"{len(images)} images but {len(texts)} texts")
        pixels = self._pixels(images) if images is not None else None
        tokens = self._tokens(texts) if texts is not None else None
        kind = "multimodal" if pixels is not None and tokens is not None else ("images" if tokens is None else "text")
        return pixels, tokens, kind

    # -- embeddings ------------------------------------------------------------------------------
    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(_projection(self.get_image_features(pixel_values=pixel_values)), dim=-1)

    def encode_text(self, tokens) -> torch.Tensor:
        return F.normalize(_projection(self.get_text_features(**tokens)), dim=-1)

    def encode_multimodal(self, pixel_values: torch.Tensor, tokens) -> torch.Tensor:
        fused = _projection(self.get_image_features(pixel_values=pixel_values)) + _projection(
            self.get_text_features(**tokens))
        return F.normalize(fused, dim=-1)

    def encode(self, images=None, text=None) -> torch.Tensor:
        pixels, tokens, kind = self.data_process(images, text)
        if kind == "images":
            return self.encode_image(pixels)
        if kind == "text":
            return self.encode_text(tokens)
        return self.encode_multimodal(pixels, tokens)
