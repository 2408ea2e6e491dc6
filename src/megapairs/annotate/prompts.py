"""Versioned prompt files (`prompts/<version>_<name>`) and the few-shot demonstration pool.

Files of a version (each name prefixed with `<version>_`): `describe_images.txt` (step 1 from pixels, chat), `describe_captions.txt` and
`describe_captions_demo.txt` (step 1 from captions, completion-style few-shot), `write.txt` and
`write_demo.txt` (step 2, completion-style few-shot ending in an open JSON list), `demos.jsonl`.
Step-2 prompts read the same on `/v1/completions` (base models) and as one chat message.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

FILES = ("describe_images.txt", "describe_captions.txt", "describe_captions_demo.txt", "write.txt",
         "write_demo.txt")


@dataclass(frozen=True)
class Demo:
    id: str
    source_caption: str
    source_label: str
    target_caption: str
    target_label: str
    relation: str
    queries: tuple[str, ...]


def one_line(text: str, limit: int = 400) -> str:
    return " ".join(str(text or "").split())[:limit]


def load_demos(path: Path | str) -> list[Demo]:
    demos = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            demos.append(Demo(id=str(d["id"]), source_caption=d["source"]["caption"],
                              source_label=d["source"].get("label", ""), target_caption=d["target"]["caption"],
                              target_label=d["target"].get("label", ""), relation=d["relation"],
                              queries=tuple(d["queries"])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{n}: bad demonstration ({e})") from None
    if not demos:
        raise ValueError(f"{path}: no demonstrations")
    return demos


class PromptSet:
    """All prompt texts of one version plus its demo pool."""

    def __init__(self, version: str = "v1", demo_pool: str = "") -> None:
        base = files("megapairs.annotate").joinpath("prompts")
        if not base.joinpath(f"{version}_{FILES[0]}").is_file():
            raise ValueError(f"unknown prompt version {version!r} (no prompts/{version}_{FILES[0]})")
        self.version = version
        self.texts = {name: base.joinpath(f"{version}_{name}").read_text(encoding="utf-8") for name in FILES}
        pool = Path(demo_pool) if demo_pool else Path(str(base.joinpath(f"{version}_demos.jsonl")))
        self.demos = load_demos(pool)
        h = hashlib.sha256()
        for name in FILES:
            h.update(self.texts[name].encode())
        h.update(pool.read_bytes())
        self.fingerprint = h.hexdigest()[:16]

    def sample_demos(self, rng: random.Random, k: int) -> list[Demo]:
        return rng.sample(self.demos, min(k, len(self.demos)))

    def describe_images(self, word_limit: int) -> str:
        return self.texts["describe_images.txt"].format(word_limit=word_limit).strip()

    def describe_captions(self, source_caption: str, source_label: str, target_caption: str,
                          target_label: str, word_limit: int, demos: list[Demo]) -> str:
        shots = "".join(
            self.texts["describe_captions_demo.txt"].format(
                source_caption=d.source_caption, source_label=d.source_label, target_caption=d.target_caption,
                target_label=d.target_label, relation=d.relation, word_limit=demo_budget(d.relation))
            for d in demos)
        return self.texts["describe_captions.txt"].format(
            demos=shots, source_caption=one_line(source_caption), source_label=one_line(source_label, 80) or "unknown",
            target_caption=one_line(target_caption), target_label=one_line(target_label, 80) or "unknown",
            word_limit=word_limit).rstrip()

    def write(self, relation: str, demos: list[Demo]) -> str:
        shots = "".join(
            self.texts["write_demo.txt"].format(relation=d.relation, queries=json.dumps(list(d.queries), ensure_ascii=False))
            for d in demos)
        return self.texts["write.txt"].format(demos=shots, relation=one_line(relation, 1200)).rstrip()


def demo_budget(relation: str) -> int:
    """The word budget shown with a demonstration: its length rounded up to the next ten."""
    return max(20, int(math.ceil(len(relation.split()) / 10.0)) * 10)
