"""The two annotation roles and their backends.

Describers (step 1), by spec:
  `openai:…`, `hf-vlm:…` (any image-capable generator)  looks at both pictures
  `captions:<generator spec>`                            reads both captions + labels instead of pixels
  `template:`                                            deterministic note from captions and labels
Writers (step 2):
  any generator spec (`llamacpp:gemma3-270m`, `openai:…`, `openai-completions:…`, `hf-vlm:…`)
  `template:`                                            deterministic instructions (last fallback)
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import GenRequest, Generator
from megapairs.annotate.prompts import PromptSet, one_line
from megapairs.annotate.validate import (InstructionCheck, check_description, check_instructions,
                                         clean_description, parse_instruction_list)
from megapairs.registry import Registry, SpecError, split_spec


@dataclass
class PairItem:
    """One mined pair with what the describers may look at (images as PNG bytes, loaded on demand)."""

    query_id: str
    target_id: str
    source_caption: str = ""
    source_label: str = ""
    target_caption: str = ""
    target_label: str = ""
    source_image: bytes | None = None
    target_image: bytes | None = None


@dataclass
class Described:
    text: str
    reason: str = ""  # '' when usable
    raw: str = ""
    cached: bool = False


@dataclass
class Written:
    check: InstructionCheck
    raw: str = ""
    demo_ids: list[str] = field(default_factory=list)
    cached: bool = False


def derived_rng(seed: int, *parts: object) -> random.Random:
    """A generator that depends only on (seed, parts): the same pair gets the same draws whatever
    the shard layout, worker count or order of completion."""
    h = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def request_seed(rng: random.Random) -> int:
    return rng.randrange(0, 2**31 - 1)


class Describer(Protocol):
    spec: str
    needs_images: bool

    async def describe(self, item: PairItem, word_limit: int) -> Described: ...


class Writer(Protocol):
    spec: str
    uses_model: bool

    async def write(self, item: PairItem, description: str, attempt: int) -> Written: ...


@dataclass
class RoleContext:
    config: AnnotateConfig
    prompts: PromptSet
    generator: Callable[[str], Generator]  # shared instances by spec


def _completion_style(gen: Generator) -> bool:
    return getattr(gen, "api", "chat") == "completions"


class ImageDescriber:
    needs_images = True

    def __init__(self, gen: Generator, ctx: RoleContext) -> None:
        if not gen.supports_images:
            raise SpecError(f"describer {gen.spec!r} cannot take images; use captions:{gen.spec}")
        self.gen, self.ctx, self.spec = gen, ctx, gen.spec

    async def describe(self, item: PairItem, word_limit: int) -> Described:
        if item.source_image is None or item.target_image is None:
            return Described("", reason="image missing")
        c, p = self.ctx.config, self.ctx.prompts
        rng = derived_rng(c.seed, item.query_id, item.target_id, "describe")
        req = GenRequest(prompt=p.describe_images(word_limit), images=(item.source_image, item.target_image),
                         image_labels=("Source picture:", "Target picture:"), max_tokens=c.describe_max_tokens,
                         temperature=c.temperature, top_p=c.top_p, seed=request_seed(rng),
                         tag=f"{p.version}/describe_images")
        res = await self.gen.generate(req)
        text = clean_description(res.text)
        return Described(text, check_description(text, word_limit), res.text, res.cached)


class CaptionDescriber:
    needs_images = False

    def __init__(self, gen: Generator, ctx: RoleContext) -> None:
        self.gen, self.ctx, self.spec = gen, ctx, f"captions:{gen.spec}"

    async def describe(self, item: PairItem, word_limit: int) -> Described:
        c, p = self.ctx.config, self.ctx.prompts
        rng = derived_rng(c.seed, item.query_id, item.target_id, "describe")
        demos = p.sample_demos(rng, c.few_shot_k)
        prompt = p.describe_captions(item.source_caption, item.source_label, item.target_caption,
                                     item.target_label, word_limit, demos)
        stop = ("\n",) if _completion_style(self.gen) else ("\nSource caption:",)
        req = GenRequest(prompt=prompt, max_tokens=c.describe_max_tokens, temperature=c.temperature, top_p=c.top_p,
                         seed=request_seed(rng), stop=stop, tag=f"{p.version}/describe_captions")
        res = await self.gen.generate(req)
        text = clean_description(res.text.split("\n\n")[0], primed_prefix="Shared:")
        return Described(text, check_description(text, word_limit), res.text, res.cached)


_STOP = {"a", "an", "the", "of", "on", "in", "with", "and", "at", "to", "its", "is", "are", "by", "for", "from",
         "near", "under", "over", "two", "one", "some", "this", "that", "into", "very"}


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2]


class TemplateDescriber:
    """Deterministic relation note from captions and labels (no model)."""

    needs_images = False
    spec = "template:"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    async def describe(self, item: PairItem, word_limit: int) -> Described:
        sl, tl = one_line(item.source_label, 80), one_line(item.target_label, 80)
        sc, tc = one_line(item.source_caption).rstrip("."), one_line(item.target_caption).rstrip(".")
        if not (tc or tl):
            return Described("", reason="template: no caption or label for the target")
        if sl and sl.lower() == tl.lower():
            shared = f"both show a {sl}"
        else:
            common = [w for w in dict.fromkeys(_content_words(sc)) if w in set(_content_words(tc))]
            shared = f"both involve {', '.join(common[:4])}" if common else "both are related pictures"
        text = f"Shared: {shared}. Source only: {sc or sl}. Target only: {tc or tl}."
        words = text.split()
        text = " ".join(words[: max(word_limit, 20)])
        return Described(text, check_description(text, word_limit, min_words=5))


class ModelWriter:
    uses_model = True

    def __init__(self, gen: Generator, ctx: RoleContext) -> None:
        self.gen, self.ctx, self.spec = gen, ctx, gen.spec

    async def write(self, item: PairItem, description: str, attempt: int) -> Written:
        c, p = self.ctx.config, self.ctx.prompts
        rng = derived_rng(c.seed, item.query_id, item.target_id, "write", attempt)
        demos = p.sample_demos(rng, c.few_shot_k)
        stop = ("]", "\n") if _completion_style(self.gen) else ("]", "\nNote:")
        req = GenRequest(prompt=p.write(description, demos), max_tokens=c.write_max_tokens, temperature=c.temperature,
                         top_p=c.top_p, seed=request_seed(rng), stop=stop, tag=f"{p.version}/write")
        res = await self.gen.generate(req)
        candidates = parse_instruction_list(res.text, primed=True)
        check = check_instructions(candidates, description, min_count=c.min_instructions,
                                   max_count=c.max_instructions, max_chars=c.max_chars, min_words=c.min_words)
        return Written(check, res.text, [d.id for d in demos], res.cached)


_PARTS = re.compile(r"Shared:\s*(?P<shared>.*?)\s*Source only:\s*(?P<src>.*?)\s*Target only:\s*(?P<tgt>.*)$",
                    re.IGNORECASE | re.DOTALL)


class TemplateWriter:
    """Deterministic instructions from the note's target part, or the target caption. Rows it writes
    carry `writer_used = "template:"`."""

    uses_model = False
    spec = "template:"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    async def write(self, item: PairItem, description: str, attempt: int) -> Written:
        c = self.ctx.config
        m = _PARTS.search(description or "")
        target_part = (m.group("tgt") if m else "").strip().rstrip(".")
        caption = one_line(item.target_caption).rstrip(".")
        label = one_line(item.target_label, 60)
        what = caption or target_part or label
        change = target_part or caption or label
        candidates = [] if not what else [
            f"Find a picture related to this one that shows {what}.",
            f"Same {label or 'subject'} as here, but changed: {change}.",
            f"Make it look like this instead: {change}." if change != what else f"Turn this into {what}.",
        ]
        candidates = [t if len(t) <= c.max_chars else t[: c.max_chars - 1].rsplit(" ", 1)[0] + "." for t in candidates]
        check = check_instructions(candidates, description, min_count=c.min_instructions,
                                   max_count=c.max_instructions, max_chars=c.max_chars, min_words=c.min_words)
        if not what:
            check.reason = "template: no caption, label or note for the target"
        return Written(check, "\n".join(candidates))


DESCRIBERS: Registry[Describer] = Registry("describer")
WRITERS: Registry[Writer] = Registry("writer")


@DESCRIBERS.register("captions")
def _captions(arg: str, ctx: RoleContext) -> Describer:
    if split_spec(arg)[0] == "template":
        return TemplateDescriber(ctx)
    return CaptionDescriber(ctx.generator(arg), ctx)


@DESCRIBERS.register("template")
def _template_describer(arg: str, ctx: RoleContext) -> Describer:
    return TemplateDescriber(ctx)


@WRITERS.register("template")
def _template_writer(arg: str, ctx: RoleContext) -> Writer:
    return TemplateWriter(ctx)


def _register_generator_prefixes() -> None:
    import megapairs.annotate.client  # noqa: F401  (the generator modules register their prefixes)
    import megapairs.annotate.hf_vlm  # noqa: F401
    import megapairs.annotate.llamacpp  # noqa: F401
    from megapairs.annotate.llm import GENERATORS

    for prefix in GENERATORS.prefixes():
        def image_describer(arg: str, ctx: RoleContext, _p: str = prefix) -> Describer:
            return ImageDescriber(ctx.generator(f"{_p}:{arg}"), ctx)

        def model_writer(arg: str, ctx: RoleContext, _p: str = prefix) -> Writer:
            return ModelWriter(ctx.generator(f"{_p}:{arg}"), ctx)

        DESCRIBERS.register(prefix)(image_describer)
        WRITERS.register(prefix)(model_writer)


_register_generator_prefixes()


def build_describer(spec: str, ctx: RoleContext) -> Any:
    return DESCRIBERS.build(spec, ctx=ctx)


def build_writer(spec: str, ctx: RoleContext) -> Any:
    return WRITERS.build(spec, ctx=ctx)
