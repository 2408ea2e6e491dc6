"""Shared pieces of the trainable retrievers: input normalisation, image loading, the base class.

Every retriever here is an `nn.Module` with two halves:

- a *processor* (picklable, CPU only): raw images / strings -> a dict of batch-first tensors. Data
  loader workers run it, so it must not hold the model;
- `forward(**inputs)` -> L2-normalised embeddings (B, D), differentiable. The trainer calls this;
  `encode` wraps processor + forward under `inference_mode` for users.

All input tensors are batch-first, so a batch can be cut into chunks by slicing (grad cache).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from megapairs.embed.backends.preprocess import Preprocess
from megapairs.models.base import ImagesArg, TextArg

log = logging.getLogger("megapairs")

META_FILE = "megapairs_retriever.json"
META_FORMAT = 1

Inputs = dict[str, torch.Tensor]


# -- arguments ------------------------------------------------------------------------------------
def _is_single_image(x: Any) -> bool:
    return isinstance(x, (str, Path, Image.Image, bytes, bytearray)) or (isinstance(x, dict) and "bytes" in x)


def as_image_list(images: ImagesArg) -> list | None:
    if images is None:
        return None
    if _is_single_image(images):
        return [images]
    return list(images)


def as_text_list(text: TextArg) -> list[str] | None:
    if text is None:
        return None
    if isinstance(text, str):
        return [text]
    out = list(text)
    if not all(isinstance(t, str) for t in out):
        raise TypeError("text must be a string or a list of strings")
    return out


def pair_inputs(images: ImagesArg, text: TextArg) -> tuple[list | None, list[str] | None, int]:
    """Normalise `encode` arguments to lists of equal length. A single image (or text) paired with a
    list of the other is repeated; otherwise both lists must have the same length."""
    imgs, texts = as_image_list(images), as_text_list(text)
    if imgs is None and texts is None:
        raise ValueError("encode needs images, text, or both")
    if imgs is not None and texts is not None and len(imgs) != len(texts):
        if len(imgs) == 1:
            imgs = imgs * len(texts)
        elif len(texts) == 1:
            texts = texts * len(imgs)
        else:
            raise ValueError(f"got {len(imgs)} images and {len(texts)} texts; composed queries need one text per image")
    n = len(imgs) if imgs is not None else len(texts)  # type: ignore[arg-type]
    return imgs, texts, n


def load_image(x: Any) -> Image.Image:
    """A path, PIL image, raw bytes or an HF-datasets image dict -> RGB PIL image."""
    if isinstance(x, Image.Image):
        return x.convert("RGB")
    if isinstance(x, (bytes, bytearray)):
        return Image.open(io.BytesIO(x)).convert("RGB")
    if isinstance(x, dict):
        if x.get("bytes") is not None:
            return Image.open(io.BytesIO(x["bytes"])).convert("RGB")
        x = x["path"]
    with Image.open(Path(x)) as im:
        return im.convert("RGB")


# -- preprocessing --------------------------------------------------------------------------------
class HFExactPreprocess:
    """A retriever's image preprocessing: `embed.backends.preprocess.Preprocess`, which sizes and
    crops exactly as transformers' CLIP image processor does (so BGE-VL scores reproduce), after
    that processor's own RGB step (`hf_rgb`)."""

    def __init__(self, pre: Preprocess) -> None:
        self.pre = pre

    @property
    def key(self) -> str:
        return "hf-exact-hfrgb-" + self.pre.key  # hfrgb: transparency handled as transformers does

    @property
    def size(self) -> tuple[int, int]:
        return self.pre.crop

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.pre(hf_rgb(image))


def hf_rgb(image: Image.Image) -> Image.Image:
    """The image as the installed transformers' image processors turn a PIL image into RGB
    (`image_transforms.convert_to_rgb`, which they apply even to an image the caller already
    converted). This matters only for an image with transparency: PIL's `convert("RGB")` of a
    palette image keeps `info["transparency"]` (as a colour), and transformers 5 composites that onto
    white, so the pixels of that colour turn white; transformers 4 returns RGB images unchanged."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image  # every transformers version returns it as is
    from transformers.image_transforms import convert_to_rgb

    if "return_numpy" in inspect.signature(convert_to_rgb).parameters:  # transformers 5
        return Image.fromarray(convert_to_rgb(image, return_numpy=True))
    return convert_to_rgb(image)


def stack_pixels(images: Sequence[Any], preprocess: Callable[[Image.Image], np.ndarray]) -> torch.Tensor:
    """list of images -> (B, 3, H, W) float32."""
    return torch.from_numpy(np.stack([preprocess(load_image(im)) for im in images]))


def warn_truncated(tokenizer, texts: list[str], max_length: int, what: str) -> None:
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    over = [n for n in lengths if n > max_length]
    if over:
        log.warning("%s: %d of %d texts are longer than %d tokens (max %d) and were truncated",
                    what, len(over), len(texts), max_length, max(over))


# -- fingerprints ---------------------------------------------------------------------------------
def folder_fingerprint(folder: Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.json")) -> str:
    """Cheap identity of a checkpoint folder: names, sizes and mtimes of its weight/config files."""
    h = hashlib.sha256()
    for pat in patterns:
        for p in sorted(Path(folder).glob(pat)):
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().float().cpu().contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


# -- meta file ------------------------------------------------------------------------------------
def write_meta(folder: Path, kind: str, spec: str, **options: Any) -> None:
    meta = {"format": META_FORMAT, "class": kind, "source_spec": spec, "options": options}
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{folder} has no {META_FILE}; it was not saved by megapairs "
                                "(use clip:FOLDER or mllm:FOLDER for plain Hugging Face checkpoints)")
    return json.loads(path.read_text())


# -- base class -----------------------------------------------------------------------------------
class EmbeddingRetriever(nn.Module):
    """Base of the trainable retrievers. Subclasses implement `processor`, `forward`,
    `save_pretrained`, `from_pretrained` and `_describe` (preprocessing + prompt identity)."""

    kind: ClassVar[str] = ""
    # Text-related lists per role: "query" (image + text or text) and "candidate" (image).
    default_lora_targets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: str) -> None:
        super().__init__()
        self.spec = spec
        self.batch_size = 32
        self._source_fingerprint: str | None = None  # set by from_pretrained; cleared on training

    # -- to implement ----------------------------------------------------------------------------
    def processor(self) -> Callable[..., Inputs]:
        """A picklable `f(images=list|None, texts=list|None, role="query"|"candidate") -> Inputs`."""
        raise NotImplementedError

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:  # (B, D), L2-normalised
        raise NotImplementedError

    def save_pretrained(self, folder: str | Path) -> Path:
        raise NotImplementedError

    def _describe(self) -> str:
        """Preprocessing / prompt settings that change embeddings (goes into preprocess_id)."""
        raise NotImplementedError

    # -- training hooks (overridden where meaningful) ---------------------------------------------
    def prepare_for_training(self, cfg: Any) -> None:
        """Freeze / LoRA / gradient checkpointing according to a TrainConfig."""

    def finalize_training(self) -> None:
        """Merge adapters etc. before saving; the weights changed, so forget the source identity."""
        self._source_fingerprint = None

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    # -- shared behaviour ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def preprocess_id(self) -> str:
        """Weights + preprocessing identity. From the folder it was loaded from while untouched,
        else from the trainable tensors' contents (plus the source it started from)."""
        weights = self._source_fingerprint or ("trained-" + tensors_fingerprint(self.trainable_state()))
        digest = hashlib.sha256(f"{self.kind}|{weights}|{self._describe()}".encode()).hexdigest()[:16]
        return f"{self.kind}-{digest}"

    def encode_inputs(self, role: str, images: list | None, texts: list[str] | None) -> torch.Tensor:
        proc = self.processor()
        out = []
        n = len(images) if images is not None else len(texts or [])
        for i in range(0, n, self.batch_size):
            sl = slice(i, i + self.batch_size)
            inputs = proc(images=images[sl] if images is not None else None,
                          texts=texts[sl] if texts is not None else None, role=role)
            inputs = to_device(inputs, self.device)
            out.append(self(**inputs).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)

    def encode(self, images: ImagesArg = None, text: TextArg = None, *, role: str | None = None) -> torch.Tensor:
        """images only -> candidates; text only -> text queries; both -> composed queries.
        `role="candidate"` embeds text as a candidate (matters for prompted models, e.g. image -> text
        search with the MLLM). Returns L2-normalised float32 (B, D) on CPU."""
        imgs, texts, _ = pair_inputs(images, text)
        role = role or ("candidate" if texts is None else "query")
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self.encode_inputs(role, imgs, texts)
        finally:
            self.train(was_training)


def set_activation_checkpointing(model, on: bool) -> None:
    """Turn activation (gradient) checkpointing of a transformers model on or off, with the
    non-reentrant implementation (works with frozen inputs and LoRA)."""
    if on:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif getattr(model, "supports_gradient_checkpointing", False):
        if hasattr(model, "activation_checkpointing_disable"):
            model.activation_checkpointing_disable()
        else:
            model.gradient_checkpointing_disable()


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}


def slice_inputs(inputs: Inputs, start: int, stop: int) -> Inputs:
    return {k: v[start:stop] for k, v in inputs.items()}


def batch_len(inputs: Inputs) -> int:
    return int(next(iter(inputs.values())).shape[0])
