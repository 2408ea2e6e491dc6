"""BGE-VL-MLLM-style retriever on LLaVA-NeXT (`mllm:FOLDER_OR_NAME`).

The embedding is the L2-normalised last-layer hidden state at the last prompt position. Batches
are left-padded so that position is the final prompt token for every row. Prompts follow the
released `LLaVANextForEmbedding.prepare_text_input` (reference note §4.2):

- query:     "[INST] \\n <instruct> {instruction} <query> " + " {text} \\n" + " <image>" + " [/INST]"
- candidate: "[INST] " + " {text} \\n" + " <image>" + " [/INST]"

(the text part whenever a text is given, even "", as the released code tests `text is not None`; the
image part when there is an image). Images are opened, resized to 512x512 (aspect ratio dropped) and
only then converted to RGB, in the released code's order (it matters for palette and RGBA files). Unlike the released code nothing is patched globally: the
base `LlavaNextModel` (no LM head) is called and its `last_hidden_state` read.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from megapairs.embed.backends.base import pick_device
from megapairs.models.common import (
    EmbeddingRetriever,
    Inputs,
    folder_fingerprint,
    pair_inputs,
    set_activation_checkpointing,
    write_meta,
)

log = logging.getLogger("megapairs")

CIR_INSTRUCTION = ("Retrieve the target image that best meets the combined criteria by using both the "
                   "provided image and the image retrieval instructions: ")
IMAGE_SIDE = 512


def query_prompt(text: str | None, has_image: bool, instruction: str | None) -> str:
    if instruction is not None:  # the released code tests `is None`: "" gives "<instruct>  <query> "
        prompt = f"[INST] \n <instruct> {instruction} <query> "
    else:
        prompt = "[INST] \n <instruct>  <query>"
    if text is not None:  # the released code: "" still adds " \n"
        prompt += f" {text} \n"
    if has_image:
        prompt += " <image>"
    return prompt + " [/INST]"


def candidate_prompt(text: str | None, has_image: bool) -> str:
    prompt = "[INST] "
    if text is not None:
        prompt += f" {text} \n"
    if has_image:
        prompt += " <image>"
    return prompt + " [/INST]"


def load_resized(x: Any, side: int) -> Image.Image:
    """As the released `data_process`: `Image.open(p).resize((side, side)).convert("RGB")`. Resizing
    before converting differs from the reverse for palette images (PIL resizes those with NEAREST)
    and RGBA ones (premultiplied alpha). PIL images, bytes and HF image dicts are taken too."""
    if isinstance(x, dict):
        x = x["bytes"] if x.get("bytes") is not None else x["path"]
    if isinstance(x, (bytes, bytearray)):
        x = io.BytesIO(x)
    im = x if isinstance(x, Image.Image) else Image.open(x if isinstance(x, io.BytesIO) else Path(x))
    return im.resize((side, side)).convert("RGB")


def pair_optional_texts(images: Any, text: Any) -> tuple[list | None, list[str | None] | None, int]:
    """`pair_inputs`, but a text list may hold None for rows without text (image-only rows of a
    mixed batch): the released code builds those prompts without the text part."""
    if isinstance(text, (list, tuple)) and any(t is None for t in text):
        imgs, texts, n = pair_inputs(images, ["" if t is None else t for t in text])
        missing = [t is None for t in text] * (n if len(text) == 1 else 1)
        return imgs, [None if m else t for m, t in zip(missing, texts or [])], n
    return pair_inputs(images, text)


class MLLMProcessor:
    """Picklable CPU half: prompts + 512x512 images through a `LlavaNextProcessor` (left padding)."""

    def __init__(self, processor, instruction: str | None, image_side: int = IMAGE_SIDE,
                 max_length: int | None = None) -> None:
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        self.instruction = instruction
        self.image_side = image_side
        self.max_length = max_length

    def __call__(self, images: list | None = None, texts: list[str | None] | None = None, role: str = "query",
                 instructions: list[str | None] | None = None) -> Inputs:
        """`instructions[i]` (when given and not None) replaces the task instruction of query row i."""
        n = len(images) if images is not None else len(texts or [])
        prompts = []
        for i in range(n):
            text = texts[i] if texts is not None else None
            if role == "query":
                own = instructions[i] if instructions is not None else None
                prompts.append(query_prompt(text, images is not None, own if own is not None else self.instruction))
            else:
                prompts.append(candidate_prompt(text, images is not None))
        kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True}
        if images is not None:
            kwargs["images"] = [load_resized(im, self.image_side) for im in images]
        batch = self.processor(text=prompts, **kwargs)
        out = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_sizes") if k in batch}
        return out  # input_ids (B, L), attention_mask (B, L), pixel_values (B, P, 3, h, w), image_sizes (B, 2)


def load_llava_processor(folder: Path):
    """`LlavaNextProcessor` from a folder; without torchvision, with the PIL image processor."""
    from transformers import AutoTokenizer, LlavaNextProcessor

    try:
        return LlavaNextProcessor.from_pretrained(folder)
    except Exception as e:  # transformers 5 without torchvision
        log.debug("LlavaNextProcessor.from_pretrained failed (%s); using the PIL image processor", e)
    from transformers import LlavaNextImageProcessorPil

    image_processor = LlavaNextImageProcessorPil.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                              **_processor_extras(folder))


def _processor_extras(folder: Path) -> dict[str, Any]:
    import json

    for name in ("processor_config.json", "preprocessor_config.json"):
        path = Path(folder) / name
        if path.exists():
            cfg = json.loads(path.read_text())
            keys = ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens", "image_token")
            return {k: cfg[k] for k in keys if k in cfg}
    return {}


class MLLMRetriever(EmbeddingRetriever):
    kind = "mllm"
    # LoRA on the attention projections of both the ViT (out_proj) and the LLM (o_proj).
    default_lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")
    # module-name prefixes of each tower inside LlavaNextForConditionalGeneration (LoRA skips a frozen one)
    tower_prefixes = {"vision": ("model.vision_tower", "model.multi_modal_projector"),
                      "text": ("model.language_model",)}

    def __init__(self, model, processor, *, spec: str, instruction: str | None = CIR_INSTRUCTION,
                 image_side: int = IMAGE_SIDE, source: Path | None = None) -> None:
        super().__init__(spec)
        self.model = model  # LlavaNextForConditionalGeneration (possibly peft-wrapped in training)
        self.hf_processor = processor
        self.hf_processor.tokenizer.padding_side = "left"
        self.instruction = instruction
        self.image_side = image_side
        self.source = Path(source) if source is not None else None
        if hasattr(self.model, "lm_head"):
            self.model.lm_head.requires_grad_(False)  # never used for embeddings
        self.batch_size = 8
        if not instruction:
            log.warning("mllm retriever without a task instruction; BGE-VL-MLLM works best with one")

    @classmethod
    def from_pretrained(cls, name: str | Path, *, device: str = "auto", dtype: str | None = None,
                        instruction: str | None = CIR_INSTRUCTION, image_side: int = IMAGE_SIDE,
                        spec: str | None = None, **_: Any) -> "MLLMRetriever":
        from transformers import LlavaNextForConditionalGeneration

        from megapairs.embed.backends.hf import resolve_folder

        folder = resolve_folder(str(name))
        kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
        model = LlavaNextForConditionalGeneration.from_pretrained(folder, **kwargs).eval().to(pick_device(device))
        obj = cls(model, load_llava_processor(folder), spec=spec or f"mllm:{name}", instruction=instruction,
                  image_side=image_side, source=folder)
        obj._source_fingerprint = folder_fingerprint(folder)
        return obj

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()
        self.model.save_pretrained(folder)
        self.hf_processor.save_pretrained(folder)
        write_meta(folder, self.kind, self.spec, instruction=self.instruction, image_side=self.image_side)
        self.source = folder
        self._source_fingerprint = folder_fingerprint(folder)
        self.spec = f"ckpt:{folder}"
        return folder

    # -- embedding -------------------------------------------------------------------------------
    def processor(self) -> MLLMProcessor:
        return MLLMProcessor(self.hf_processor, self.instruction, self.image_side)

    def encode(self, images=None, text=None, *, role: str | None = None,
               instruction: str | list[str | None] | None = None) -> torch.Tensor:
        """As `EmbeddingRetriever.encode`; `instruction` (one string, or one per row) replaces the
        retriever's task instruction in the query prompts (e.g. each MMEB task's own instruction).
        A text list may hold None for rows without text; "" is a text (the released code's rule)."""
        imgs, texts, n = pair_optional_texts(images, text)
        rows = [instruction] * n if instruction is None or isinstance(instruction, str) else list(instruction)
        if len(rows) != n:
            raise ValueError(f"got {len(rows)} instructions for {n} inputs")
        role = role or ("candidate" if texts is None else "query")
        proc = self.processor()
        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.inference_mode():
                for i in range(0, n, self.batch_size):
                    sl = slice(i, i + self.batch_size)
                    inputs = proc(images=imgs[sl] if imgs is not None else None,
                                  texts=texts[sl] if texts is not None else None, role=role, instructions=rows[sl])
                    inputs = {k: v.to(self.device) for k, v in inputs.items()}
                    out.append(self(**inputs).float().cpu())  # (b, H)
        finally:
            self.train(was_training)
        return torch.cat(out)

    def _describe(self) -> str:
        # "resize-then-rgb": the image order changed once; old gallery caches must not be reused
        return (f"side={self.image_side}|resize-then-rgb|instruction={self.instruction!r}|"
                + query_prompt("{t}", True, "{i}"))

    def _backbone(self):
        """The `LlavaNextModel` (vision tower + projector + LLM without the LM head)."""
        m = self.model
        if hasattr(m, "get_base_model"):  # peft wrapper; the adapters live inside the modules
            m = m.get_base_model()
        return m.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor | None = None, image_sizes: torch.Tensor | None = None) -> torch.Tensor:
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("mllm inputs must be left-padded (the last position is the embedding)")
        backbone = self._backbone()
        if pixel_values is not None:
            pixel_values = pixel_values.to(backbone.vision_tower.dtype)
        out = backbone(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                       image_sizes=image_sizes, use_cache=False)
        last = out.last_hidden_state[:, -1]  # (B, H): hidden state of the final prompt token
        return F.normalize(last.float(), dim=-1)  # (B, H)

    # -- training --------------------------------------------------------------------------------
    def prepare_for_training(self, cfg: Any) -> None:
        if cfg.lora_r > 0:
            from megapairs.models.lora import apply_lora

            self.model = apply_lora(self.model, cfg, self.default_lora_targets, self.tower_prefixes)
        else:
            m = self.model
            if cfg.freeze_vision:
                for p in list(m.model.vision_tower.parameters()) + list(m.model.multi_modal_projector.parameters()):
                    p.requires_grad_(False)
            if cfg.freeze_text:
                for p in m.model.language_model.parameters():
                    p.requires_grad_(False)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        base.lm_head.requires_grad_(False)
        if cfg.gradient_checkpointing:
            set_activation_checkpointing(base, True)

    def finalize_training(self) -> None:
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()
        set_activation_checkpointing(self.model, False)
        super().finalize_training()
