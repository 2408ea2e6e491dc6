"""Versioned prompt files (`prompts/<version>_<name>`) and the few-shot demonstration pool.

Files of a version (each name prefixed with `<version>_`): `describe_images.txt` (step 1 from pixels, chat), `describe_captions.txt` and
`describe_captions_demo.txt` (step 1 from captions, completion-style few-shot), `write.txt` and
`write_demo.txt` (step 2, completion-style few-shot ending in an open JSON list), `demos.jsonl`.
Step-2 prompts read the same on `/v1/completions` (base models) and as one chat message.

Line mode (one instruction per request, for small base models) has its own optional files:
`write_line.txt` and `write_line_demo.txt` (a few "Relation: ... / Instruction: ..." shots, then the
pair's relation and an opening word), `line_demos.jsonl` (relations in the template shape with short
instructions) and `line_openers.txt` (the opening words, one per line).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

FILES = ("describe_images.txt", "describe_captions.txt", "describe_captions_demo.txt", "write.txt",
         "write_demo.txt")
LINE_FILES = ("write_line.txt", "write_line_demo.txt", "line_openers.txt")


@dataclass(frozen=True)
class LineDemo:
    id: str
    relation: str
    instructions: tuple[str, ...]


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


def _read_jsonl(path: Path | str, what: str, parse) -> list:
    """Parse each non-empty JSONL line with `parse(dict)`; errors name the file and line."""
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(parse(json.loads(line)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{n}: bad {what} ({e})") from None
    if not items:
        raise ValueError(f"{path}: no {what}s")
    return items


def load_demos(path: Path | str) -> list[Demo]:
    return _read_jsonl(path, "demonstration", lambda d: Demo(
        id=str(d["id"]), source_caption=d["source"]["caption"], source_label=d["source"].get("label", ""),
        target_caption=d["target"]["caption"], target_label=d["target"].get("label", ""),
        relation=d["relation"], queries=tuple(d["queries"])))


def _line_demo(d: dict) -> LineDemo:
    demo = LineDemo(id=str(d["id"]), relation=str(d["relation"]),
                    instructions=tuple(str(x) for x in d["instructions"]))
    if not demo.instructions:
        raise ValueError("a line demonstration needs at least one instruction")
    return demo


def load_line_demos(path: Path | str) -> list[LineDemo]:
    return _read_jsonl(path, "line demonstration", _line_demo)


class PromptSet:
    """All prompt texts of one version plus its demo pool."""

    def __init__(self, version: str = "v1", demo_pool: str = "", line_demo_pool: str = "") -> None:
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
        # Line mode is optional per version: present when all its files are.
        self.line_demos: list[LineDemo] = []
        self.openers: list[str] = []
        line_pool = Path(line_demo_pool) if line_demo_pool else Path(str(base.joinpath(f"{version}_line_demos.jsonl")))
        if all(base.joinpath(f"{version}_{n}").is_file() for n in LINE_FILES) and line_pool.is_file():
            for name in LINE_FILES:
                self.texts[name] = base.joinpath(f"{version}_{name}").read_text(encoding="utf-8")
                h.update(self.texts[name].encode())
            self.line_demos = load_line_demos(line_pool)
            self.openers = [ln.strip() for ln in self.texts["line_openers.txt"].splitlines() if ln.strip()]
            h.update(line_pool.read_bytes())
        self.fingerprint = h.hexdigest()[:16]
        self._line_sets: dict[tuple[int, int, int], list[tuple[str, str]]] = {}

    @property
    def has_line_mode(self) -> bool:
        return bool(self.line_demos and self.openers)

    def line_demo_set(self, seed: int, index: int, k: int) -> list[tuple[str, str]]:
        """Demo set `index` of a run: `k` (demo id, shot text) pairs, each shot one relation with one of
        its instructions. The same (seed, index, k) always gives the same set, so a server with prefix
        caching (llama.cpp, vLLM) keeps the shared part of the prompt warm across pairs."""
        key = (seed, index, k)
        if key not in self._line_sets:
            h = hashlib.sha256(f"{seed}|line-demos|{index}".encode()).digest()
            rng = random.Random(int.from_bytes(h[:8], "big"))
            picked = rng.sample(self.line_demos, min(k, len(self.line_demos)))
            self._line_sets[key] = [
                (d.id, self.texts["write_line_demo.txt"].format(relation=d.relation, target=target_of(d.relation),
                                                                instruction=rng.choice(d.instructions)))
                for d in picked]
        return self._line_sets[key]

    def write_line(self, relation: str, shots: list[str], opener: str) -> str:
        return self.texts["write_line.txt"].format(demos="".join(shots), relation=one_line(relation, 600),
                                                   target=one_line(target_of(relation), 200), opener=opener).rstrip()

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


def target_of(relation: str) -> str:
    """What the note says only the target shows (its last sentence when it has no such part). Line
    prompts repeat it on a `Target:` line: a small model then writes about the target, not the source."""
    from megapairs.annotate.template import note_parts

    target = note_parts(relation)[1]
    if not target:
        sentences = [x for x in re.split(r"(?<=[.!?])\s+", one_line(relation)) if x.strip()]
        target = sentences[-1] if sentences else ""
    return target.strip().rstrip(".")


def demo_budget(relation: str) -> int:
    """The word budget shown with a demonstration: its length rounded up to the next ten."""
    return max(20, int(math.ceil(len(relation.split()) / 10.0)) * 10)
