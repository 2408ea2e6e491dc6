"""The retriever protocol every composed-image retriever implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence, Union, runtime_checkable

import torch
from PIL import Image

from megapairs.registry import Registry

ImageLike = Union[str, Path, Image.Image]
ImagesArg = Union[ImageLike, Sequence[ImageLike], None]
TextArg = Union[str, Sequence[str], None]


@runtime_checkable
class Retriever(Protocol):
    """`encode` returns L2-normalised embeddings (B, D) as a torch tensor on CPU or the model device.

    - images only: candidate / gallery embeddings;
    - text only: text queries;
    - both (same length, or a single pair): composed queries (image + instruction).

    `text=""` is a text (a composed query with an empty instruction, as BGE-VL's `encode` treats
    it); only `text=None` means image-only. Retrievers with an instruction slot
    (`encode(..., instruction=)`) also take None entries in a text list, for rows without text.
    """

    spec: str

    def encode(self, images: ImagesArg = None, text: TextArg = None) -> torch.Tensor: ...

    @property
    def preprocess_id(self) -> str:
        """Identifies model weights + preprocessing; gallery caches are reused only when it matches."""
        ...


# `load_retriever(spec)` builds any registered retriever: e.g. "clip:/path/to/ckpt", "mllm:...",
# "offline:default". Implementations register themselves in their modules.
RETRIEVERS: Registry[Retriever] = Registry("retriever")


def load_retriever(spec: str, **options) -> Retriever:
    import megapairs.models.zoo  # noqa: F401  (registers the built-in retrievers)

    return RETRIEVERS.build(spec, **options)
