"""Sentence-transformers loading of megapairs checkpoints.

`write_sentence_transformers_files(folder, kind)` adds `modules.json` and
`config_sentence_transformers.json` to a saved retriever folder, so that

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(folder, trust_remote_code=True)
    q = model.encode([{"image": "query.png", "text": "make it red"}])   # composed queries
    c = model.encode(["a.png", "b.png"])                                 # images (paths or PIL)
    t = model.encode(["a red bicycle"])                                  # text

gives the vectors `load_retriever("ckpt:folder").encode(...)` gives (L2-normalised);
`load_sentence_transformer(folder)` does the same load after checking that the folder's
`modules.json` names only megapairs and sentence-transformers classes (no other code runs). The folder's
one module is `RetrieverModule`, which loads the checkpoint with megapairs and runs the
retriever's own processor and forward, so nothing is re-implemented. Sentence-transformers 6
imports module classes from outside its own package only with `trust_remote_code=True` (also for
local folders), hence the flag; megapairs must be installed where the folder is loaded.

Batches must hold one kind of input (all composed, all images, or all text), as in
sentence-transformers' own multimodal models. Strings that look like image paths or URLs are
images; other strings are text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

CLASS_REF = "megapairs.models.st_module.RetrieverModule"
MODALITIES = ["text", "image", ("image", "text")]

try:  # sentence-transformers is optional: writing the files does not need it, loading does
    from sentence_transformers.base.modules import InputModule as _Base
except ImportError:  # pragma: no cover - depends on the environment
    _Base = torch.nn.Module  # type: ignore[misc,assignment]


TRUSTED = ("megapairs.", "sentence_transformers.")  # module classes load_sentence_transformer imports


def load_sentence_transformer(folder: str | Path, *, device: str | None = None, **kwargs: Any) -> Any:
    """`SentenceTransformer(folder, trust_remote_code=True)` for a megapairs checkpoint (the model folder
    or the training run above it), after checking that the flag lets in no code but ours and
    sentence-transformers' own: every class in `modules.json` must come from those packages, and no
    sentence-transformers module may point at a transformers `auto_map` (remote modelling code). Ours
    load through megapairs' own classes, which never follow the auto_map the folder carries for
    `AutoModel.from_pretrained(folder, trust_remote_code=True)`."""
    from megapairs.errors import UserError

    folder = Path(folder).expanduser()
    if not (folder / "modules.json").is_file() and (folder / "final" / "modules.json").is_file():
        folder = folder / "final"  # a training run: its final model
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise UserError(f"{folder} has no modules.json, so it is not a sentence-transformers folder",
                        hint="give the final/ folder that `megapairs train` wrote")
    try:
        modules = json.loads(modules_file.read_text())
        entries = [(str(m["type"]), str(m.get("path", ""))) for m in modules]
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{modules_file} is not a list of sentence-transformers modules ({e})") from None
    foreign = [t for t, _ in entries if not t.startswith(TRUSTED)]
    if foreign:
        raise UserError(f"{modules_file} names module classes from outside megapairs and sentence-transformers "
                        f"({', '.join(foreign)}); refusing to import them with trust_remote_code=True",
                        hint="load it with SentenceTransformer(folder, trust_remote_code=True) yourself if you "
                        "trust that code")
    for kind, sub in entries:  # ST's own modules (Transformer, ...) would follow a config's auto_map
        config = folder / sub / "config.json"
        if kind.startswith("sentence_transformers.") and config.is_file() \
                and "auto_map" in json.loads(config.read_text()):
            raise UserError(f"{config} maps to remote modelling code (auto_map); trust_remote_code=True would "
                            "run it", hint="load it with SentenceTransformer yourself if you trust that code")
    from sentence_transformers import SentenceTransformer

    # Sentence-transformers 6 imports a module class from outside its own package only with
    # trust_remote_code=True, local folders included; the checks above keep that to our classes.
    return SentenceTransformer(str(folder), trust_remote_code=True, device=device, **kwargs)


def write_sentence_transformers_files(folder: str | Path, kind: str) -> None:
    """Make a saved retriever folder loadable with `SentenceTransformer(folder, trust_remote_code=True)`."""
    from megapairs import __version__

    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": CLASS_REF}]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    config = {"model_type": "SentenceTransformer", "__version__": {"megapairs": __version__},
              "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine",
              "megapairs_retriever_class": kind}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config, indent=2) + "\n")


class RetrieverModule(_Base):
    """The input module of a megapairs checkpoint: raw inputs -> the retriever's processor ->
    its forward -> `sentence_embedding` (B, D), L2-normalised."""

    save_in_root = True

    def __init__(self, retriever: Any) -> None:
        super().__init__()
        self.retriever = retriever  # an EmbeddingRetriever (nn.Module): its parameters move with .to()

    @property
    def modalities(self) -> list:
        return list(MODALITIES)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> "RetrieverModule":
        from megapairs.models.base import load_retriever

        folder = Path(model_name_or_path) / subfolder
        if not folder.is_dir():
            raise FileNotFoundError(f"{model_name_or_path} is not a local megapairs checkpoint folder")
        return cls(load_retriever(f"ckpt:{folder}", device="cpu"))

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        images, texts = _split(inputs)
        role = "candidate" if texts is None else "query"
        features = dict(self.retriever.processor()(images=images, texts=texts, role=role))
        return features

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        names = _forward_inputs(self.retriever)
        features["sentence_embedding"] = self.retriever(**{k: v for k, v in features.items() if k in names})
        return features

    def get_sentence_embedding_dimension(self) -> int | None:
        return None

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        self.retriever.save_pretrained(output_path)
        write_sentence_transformers_files(output_path, self.retriever.kind)


def _split(inputs: Sequence[Any]) -> tuple[list | None, list[str] | None]:
    """ST inputs -> (images, texts) for the retriever: dicts {"image", "text"}, images, or strings."""
    from sentence_transformers.base.modality import infer_modality

    kinds = {infer_modality(x, supported_modalities=MODALITIES) for x in inputs}
    if len(kinds) != 1:
        raise ValueError("a batch must hold one kind of input: all {'image', 'text'} dicts, all images, or all "
                         f"text; got {sorted(map(str, kinds))}")
    kind = kinds.pop()
    if kind == ("image", "text"):
        return [x["image"] for x in inputs], [x["text"] for x in inputs]
    if kind == "image":
        return [x["image"] if isinstance(x, dict) else x for x in inputs], None
    if kind == "text":
        return None, [x["text"] if isinstance(x, dict) else x for x in inputs]
    raise ValueError(f"megapairs retrievers take images, text, or both; got {kind!r} inputs")


def _forward_inputs(retriever: Any) -> set[str]:
    import inspect

    return {p for p in inspect.signature(retriever.forward).parameters if p not in ("self", "kwargs")}
