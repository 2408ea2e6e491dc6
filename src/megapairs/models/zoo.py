"""Built-in retrievers, registered in `RETRIEVERS` (imported by `load_retriever`).

- `clip:FOLDER_OR_NAME`  any CLIP checkpoint (incl. released BGE-VL-base/large folders): score fusion
- `mllm:FOLDER_OR_NAME`  LLaVA-NeXT embedding model (BGE-VL-MLLM family): last-token embedding
- `offline:default`      zero-shot fusion over the packaged EfficientNet / MiniLM towers
- `ckpt:FOLDER`          any folder megapairs saved (`megapairs_retriever.json` names its class)

Options (keyword arguments of `load_retriever`): `device` ("auto", "cpu", "cuda", ...), and per
family `max_length` (clip), `dtype` (clip, mllm), `instruction` (mllm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megapairs.models.base import RETRIEVERS
from megapairs.models.common import read_meta
from megapairs.registry import SpecError, needs_argument


def retriever_class(kind: str):
    if kind == "clip":
        from megapairs.models.clip_fusion import ClipFusionRetriever

        return ClipFusionRetriever
    if kind == "mllm":
        from megapairs.models.mllm import MLLMRetriever

        return MLLMRetriever
    if kind == "offline":
        from megapairs.models.offline_fusion import OfflineFusionRetriever

        return OfflineFusionRetriever
    raise SpecError(f"unknown retriever class {kind!r}; known: clip, mllm, offline")


@RETRIEVERS.register("clip", check=needs_argument("clip", "openai/clip-vit-base-patch16"))
def _clip(name: str, **options: Any):
    return retriever_class("clip").from_pretrained(name, spec=f"clip:{name}", **options)


@RETRIEVERS.register("mllm", check=needs_argument("mllm", "BAAI/BGE-VL-MLLM-S1"))
def _mllm(name: str, **options: Any):
    return retriever_class("mllm").from_pretrained(name, spec=f"mllm:{name}", **options)


def _check_offline(name: str) -> None:
    if name not in ("default", ""):
        raise SpecError(f"unknown offline retriever offline:{name}; the packaged one is offline:default")


@RETRIEVERS.register("offline", check=_check_offline)
def _offline(name: str, device: str = "auto", **options: Any):
    _check_offline(name)
    return retriever_class("offline")(device=device, spec="offline:default", **options)


def _check_ckpt(folder: str) -> None:
    resolve_checkpoint(folder)  # the folder must exist (cheap: no weights read)


@RETRIEVERS.register("ckpt", check=_check_ckpt)
def _ckpt(folder: str, **options: Any):
    path = resolve_checkpoint(folder)
    meta = read_meta(path)
    merged = {**meta.get("options", {}), **options}
    return retriever_class(meta["class"]).from_pretrained(path, spec=f"ckpt:{folder}", **merged)


def resolve_checkpoint(folder: str | Path) -> Path:
    """A saved model folder, or a training output folder (its `final/` model)."""
    if not str(folder).strip():  # `ckpt:` alone would read the current folder
        from megapairs.errors import ModelNotFound

        raise ModelNotFound("the ckpt: spec names no folder", hint="give the folder `megapairs train --out` wrote, "
                        "e.g. ckpt:runs/base")
    path = Path(folder).expanduser()
    if (path / "final").is_dir() and not (path / "megapairs_retriever.json").exists():
        path = path / "final"
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    return path
