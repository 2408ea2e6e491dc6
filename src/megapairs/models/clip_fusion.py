"""BGE-VL-CLIP retriever on a Hugging Face `CLIPModel` (`clip:FOLDER_OR_NAME`).

Embedding rules (the released `modeling_MMRet_CLIP.py` and `eval/flag_mmret.py`, paper Eq. 2):

- image only: normalize(image_projection)
- text only:  normalize(text_projection)
- both:       normalize(image_projection + text_projection)  -- the *un-normalised* projections
              are summed (score fusion, no learned weights), then the sum is normalised.

Text longer than `max_length` tokens is truncated with a warning (the tower limit, 77, by default;
BGE-VL's own evaluation used 75). Any CLIP checkpoint folder loads without `trust_remote_code`,
including the released BGE-VL folders. `save_pretrained` writes a folder that BGE-VL users can load
with `AutoModel.from_pretrained(folder, trust_remote_code=True)` (see `remote_clip.py`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from megapairs.embed.backends.base import pick_device, pooled
from megapairs.embed.backends.preprocess import Preprocess, from_hf_folder
from megapairs.models.common import (
    EmbeddingRetriever,
    HFExactPreprocess,
    Inputs,
    folder_fingerprint,
    set_activation_checkpointing,
    stack_pixels,
    warn_truncated,
    write_meta,
)

REMOTE_CODE_NAME = "modeling_MMRet_CLIP.py"
_REMOTE_CODE_SOURCE = Path(__file__).with_name("remote_clip.py")
# Tokenizer files of the source checkpoint worth carrying over for older transformers versions.
_EXTRA_TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json")


class ClipProcessor:
    """Picklable CPU half: images -> pixel_values (B, 3, H, W); texts -> input_ids / attention_mask."""

    def __init__(self, tokenizer, preprocess: HFExactPreprocess, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.max_length = max_length
        self.warn = True

    def __call__(self, images: list | None = None, texts: list[str] | None = None, role: str = "query") -> Inputs:
        out: Inputs = {}
        if images is not None:
            out["pixel_values"] = stack_pixels(images, self.preprocess)  # (B, 3, H, W)
        if texts is not None:
            if self.warn:
                warn_truncated(self.tokenizer, texts, self.max_length, "clip")
            tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            out["input_ids"] = tok["input_ids"]  # (B, L)
            out["attention_mask"] = tok["attention_mask"]  # (B, L)
        return out


class ClipFusionRetriever(EmbeddingRetriever):
    kind = "clip"
    default_lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj")
    # module-name prefixes of each tower inside CLIPModel (LoRA skips a frozen tower)
    tower_prefixes = {"vision": ("vision_model", "visual_projection"), "text": ("text_model", "text_projection")}

    def __init__(self, model, tokenizer, preprocess: Preprocess | HFExactPreprocess, *, spec: str,
                 max_length: int | None = None, source: Path | None = None) -> None:
        super().__init__(spec)
        self.model = model  # transformers CLIPModel (possibly wrapped by peft during training)
        self.tokenizer = tokenizer
        self.preprocess = preprocess if isinstance(preprocess, HFExactPreprocess) else HFExactPreprocess(preprocess)
        self.tower_limit = int(model.config.text_config.max_position_embeddings)
        self.max_length = int(max_length or self.tower_limit)
        if self.max_length > self.tower_limit:
            raise ValueError(f"max_length {self.max_length} exceeds the text tower limit {self.tower_limit}")
        self.source = Path(source) if source is not None else None
        # The loss uses a fixed temperature; CLIP's own logit_scale never enters the graph.
        self.model.logit_scale.requires_grad_(False)
        self.batch_size = 64

    # -- loading / saving ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name: str | Path, *, device: str = "auto", max_length: int | None = None,
                        dtype: str | None = None, spec: str | None = None, **_: Any) -> "ClipFusionRetriever":
        from transformers import AutoConfig, AutoTokenizer, CLIPModel

        from megapairs.embed.backends.hf import resolve_folder

        folder = resolve_folder(str(name))
        model_type = AutoConfig.from_pretrained(folder).model_type
        if model_type != "clip":
            raise ValueError(f"{folder} holds a {model_type!r} model; clip: needs a CLIP checkpoint")
        kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
        model = CLIPModel.from_pretrained(folder, **kwargs).eval().to(pick_device(device))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        obj = cls(model, tokenizer, from_hf_folder(folder), spec=spec or f"clip:{name}",
                  max_length=max_length, source=folder)
        obj._source_fingerprint = folder_fingerprint(folder)
        return obj

    def save_pretrained(self, folder: str | Path) -> Path:
        """A plain CLIP folder (weights, tokenizer, preprocessor) plus BGE-VL's remote-code entry point."""
        from transformers import CLIPImageProcessorPil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):  # still a peft model: save merged weights
            model = model.merge_and_unload()
            self.model = model
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        same = self.source is not None and self.source.resolve() == folder.resolve()
        src_pre = self.source / "preprocessor_config.json" if self.source else None
        if src_pre is not None and src_pre.exists():
            if not same:
                shutil.copyfile(src_pre, folder / "preprocessor_config.json")
        else:
            p = self.preprocess.pre
            CLIPImageProcessorPil(
                size={"shortest_edge": p.shortest_edge or p.crop[0]},
                crop_size={"height": p.crop[0], "width": p.crop[1]},
                do_center_crop=p.shortest_edge is not None, image_mean=list(p.mean), image_std=list(p.std),
                resample=p.resample, rescale_factor=p.rescale,
            ).save_pretrained(folder)
        if self.source is not None and not same:
            for name in _EXTRA_TOKENIZER_FILES:
                if (self.source / name).exists() and not (folder / name).exists():
                    shutil.copyfile(self.source / name, folder / name)
        # BGE-VL entry point: AutoModel -> our CLIPModel subclass with set_processor/encode.
        shutil.copyfile(_REMOTE_CODE_SOURCE, folder / REMOTE_CODE_NAME)
        cfg_path = folder / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["architectures"] = ["CLIPModel"]
        cfg["auto_map"] = {"AutoModel": f"{REMOTE_CODE_NAME[:-3]}.CLIPModel"}
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        write_meta(folder, self.kind, self.spec, max_length=self.max_length)
        self.source = folder
        self._source_fingerprint = folder_fingerprint(folder)
        self.spec = f"ckpt:{folder}"
        return folder

    # -- embedding -------------------------------------------------------------------------------
    def processor(self) -> ClipProcessor:
        return ClipProcessor(self.tokenizer, self.preprocess, self.max_length)

    def _describe(self) -> str:
        return f"{self.preprocess.key}|max_length={self.max_length}"

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        emb = None
        if pixel_values is not None:
            dtype = self.model.visual_projection.weight.dtype
            emb = pooled(self.model.get_image_features(pixel_values=pixel_values.to(dtype)))  # (B, D)
        if input_ids is not None:
            txt = pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))  # (B, D)
            emb = txt if emb is None else emb + txt  # fusion of un-normalised projections
        if emb is None:
            raise ValueError("no pixel_values or input_ids")
        return F.normalize(emb.float(), dim=-1)  # (B, D)

    # -- training --------------------------------------------------------------------------------
    def prepare_for_training(self, cfg: Any) -> None:
        m = self.model
        if cfg.lora_r > 0:
            from megapairs.models.lora import apply_lora

            self.model = apply_lora(m, cfg, self.default_lora_targets, self.tower_prefixes)
        else:
            if cfg.freeze_vision:
                for p in list(m.vision_model.parameters()) + list(m.visual_projection.parameters()):
                    p.requires_grad_(False)
            if cfg.freeze_text:
                for p in list(m.text_model.parameters()) + list(m.text_projection.parameters()):
                    p.requires_grad_(False)
        m.logit_scale.requires_grad_(False)
        if cfg.gradient_checkpointing:
            set_activation_checkpointing(m, True)

    def finalize_training(self) -> None:
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()
        set_activation_checkpointing(self.model, False)
        super().finalize_training()
