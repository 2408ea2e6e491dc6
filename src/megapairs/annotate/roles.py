"""The two annotation roles and their backends.

Describers (step 1), by spec:
  `openai:…`, `hf-vlm:…` (any image-capable generator)  looks at both pictures
  `captions:<generator spec>`                            reads both captions + labels instead of pixels
  `template:`                                            deterministic note from captions and labels
  `changes:`                                             states what changes, from titles, file names and
                                                         pixels (`changes.py`); no change: row dropped
Writers (step 2):
  any generator spec (`llamacpp:gemma3-270m`, `openai:…`, `openai-completions:…`, `hf-vlm:…`)
  `template:`                                            deterministic instructions (last fallback)
  `changes:`                                             instructions that ask for the stated change
When the `changes:` describer wrote the note, every writer's instructions must name the change (a
target value or a change verb); the others are rejected as `no_change_named` (restatements).

A model writer works in one of two modes (`writer_mode`): `ModelWriter` asks for a JSON list in one
request (instruct/chat models); `LineWriter` asks for one instruction per request and sends several
requests per pair concurrently (small base models behind `/v1/completions`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from megapairs.annotate import changes as changes_mod
from megapairs.annotate import template
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import BackendError, GenRequest, Generator
from megapairs.annotate.prompts import PromptSet
from megapairs.annotate.validate import (InstructionCheck, check_description, check_instructions,
                                         clean_description, clean_instruction, parse_instruction_list)
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
    source_uri: str = ""  # where the image came from (file names are evidence for `changes:`)
    target_uri: str = ""


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
    mode: str  # "list", "line" or "template"

    async def write(self, item: PairItem, description: str, attempt: int) -> Written: ...


@dataclass
class RoleContext:
    config: AnnotateConfig
    prompts: PromptSet
    generator: Callable[[str], Generator]  # shared instances by spec
    # (query_id, target_id) -> PairChanges, filled by the `changes:` describer for the writers
    changes: dict[tuple[str, str], Any] = field(default_factory=dict)

    def pair_changes(self, item: "PairItem") -> Any:
        key = (item.query_id, item.target_id)
        if key not in self.changes:
            self.changes[key] = changes_mod.pair_changes(
                item.source_caption, item.source_label, item.target_caption, item.target_label,
                item.source_uri, item.target_uri, item.source_image, item.target_image)
        return self.changes[key]

    def change_words(self, item: "PairItem") -> set[str] | None:
        """When the `changes:` describer wrote this pair's note: the words an instruction must use to
        ask for the change (else None: no such check)."""
        p = self.changes.get((item.query_id, item.target_id))
        return changes_mod.change_words(p) if p is not None and p.describable else None

    def forget(self, item: "PairItem") -> None:
        self.changes.pop((item.query_id, item.target_id), None)


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


class TemplateDescriber:
    """Deterministic relation note from captions and labels (no model), in the MegaPairs template
    shape: "Both images show …. However, the source image shows …, whereas the target image shows …"."""

    needs_images = False
    spec = "template:"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    async def describe(self, item: PairItem, word_limit: int) -> Described:
        text = template.describe(item.source_caption, item.source_label, item.target_caption, item.target_label)
        if not text:
            return Described("", reason="template: no caption or label for the target")
        words = text.split()
        text = " ".join(words[: max(word_limit, 20)])
        return Described(text, check_description(text, word_limit, min_words=5))


class ChangesDescriber:
    """States what changes from source to target, from titles, file names and pixels (`changes.py`).
    A pair with no stated change gets the reason `no describable difference` (the row is dropped)."""

    needs_images = True
    image_side = 192  # the pixel tests work on small renders
    spec = "changes:"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    async def describe(self, item: PairItem, word_limit: int) -> Described:
        p = self.ctx.pair_changes(item)
        if not p.describable:
            return Described("", reason=NO_CHANGE)
        return Described(changes_mod.describe(p))


NO_CHANGE = "no describable difference"


class ModelWriter:
    """List mode: one request per pair, the model returns a JSON list of instructions."""

    uses_model = True
    mode = "list"

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
                                   max_count=c.max_instructions, max_chars=c.max_chars, min_words=c.min_words,
                                   change_words=self.ctx.change_words(item))
        return Written(check, res.text, [d.id for d in demos], res.cached)


class LineWriter:
    """Line mode: one instruction per request, for small base models on `/v1/completions`.

    Each pair gets `min_instructions + line_spare` requests at once (later attempts only ask for the
    missing ones). A request is a short few-shot prompt ("Relation: … / Target: … / Instruction: …"
    shots from one of `line_demo_sets` fixed sets, then the pair's relation and its target part) ending
    in an opening word such as "Show" or "The same kind of"; it stops at the end of the line. Openers
    rotate over the requests of a pair and every request has its own seed, so the answers differ. All
    prompts of a run share their first part, which llama.cpp and vLLM keep cached (only the relation
    is new per pair). A request that fails on its own (HTTP 500, 4xx, malformed) is recorded as
    rejected (`request_failed`); a server that is down raises `BackendError` as in list mode.
    """

    uses_model = True
    mode = "line"

    def __init__(self, gen: Generator, ctx: RoleContext) -> None:
        if not ctx.prompts.has_line_mode:
            raise SpecError(f"prompt version {ctx.prompts.version!r} has no line-mode prompt files")
        self.gen, self.ctx, self.spec = gen, ctx, gen.spec

    def requests(self, item: PairItem, description: str, attempt: int,
                 n: int) -> list[tuple[GenRequest, str, list[str], list[str]]]:
        """(request, opener, demo ids, demo instructions) for each of the `n` requests."""
        c, p = self.ctx.config, self.ctx.prompts
        pair_rng = derived_rng(c.seed, item.query_id, item.target_id, "write_line")
        start = pair_rng.randrange(len(p.openers)) + attempt * (c.min_instructions + c.line_spare)
        out = []
        for i in range(n):
            rng = derived_rng(c.seed, item.query_id, item.target_id, "write_line", attempt, i)
            shots = p.line_demo_set(c.seed, rng.randrange(c.line_demo_sets), c.line_few_shot_k)
            opener = p.openers[(start + i) % len(p.openers)]
            req = GenRequest(prompt=p.write_line(description, [t for _, t in shots], opener),
                             max_tokens=c.line_max_tokens, temperature=c.line_temperature, top_p=c.top_p,
                             seed=request_seed(rng), stop=("\n",), tag=f"{p.version}/write_line")
            demo_texts = [t.split("Instruction:", 1)[1].strip() for _, t in shots if "Instruction:" in t]
            out.append((req, opener, [d for d, _ in shots], demo_texts))
        return out

    async def write(self, item: PairItem, description: str, attempt: int, prior: list[str] | None = None) -> Written:
        """Ask for the instructions still missing after `prior` (the valid ones of earlier attempts) and
        check them together with `prior`. `check.instructions` may hold fewer than the minimum."""
        c = self.ctx.config
        prior = list(prior or [])
        n = c.min_instructions + c.line_spare if attempt == 0 else max(1, c.min_instructions - len(prior))
        plan = self.requests(item, description, attempt, n)
        results = await asyncio.gather(*(self.gen.generate(r) for r, _, _, _ in plan), return_exceptions=True)
        for res in results:  # a server that is down stops the run; anything unexpected is a bug
            if isinstance(res, BaseException) and not (isinstance(res, BackendError) and not res.unavailable):
                raise res
        candidates, cut, raws, demo_ids, demo_texts = [], [], [], [], []
        for (req, opener, ids, texts), res in zip(plan, results):
            if isinstance(res, BackendError):  # this request failed for good; the others still count
                cut.append((str(res)[:200], "request_failed"))
                continue
            text = clean_instruction(opener + res.text)
            raws.append(opener + res.text)
            demo_ids += [d for d in ids if d not in demo_ids]
            demo_texts += texts
            if not res.text.strip(" \t\n.,;:!?\"'"):  # the opener alone is no instruction
                cut.append((text, "empty"))
            elif res.finish_reason == "length":  # cut off by max_tokens: far over the word budget
                cut.append((text, "too_long"))
            else:
                candidates.append(text)
        check = check_instructions(prior + candidates, description, min_count=c.min_instructions,
                                   max_count=c.max_instructions, max_chars=c.max_chars, min_words=c.min_words,
                                   max_words=c.max_words, demo_texts=demo_texts,
                                   relation_parts=template.note_parts(description),
                                   max_vague=None if c.max_vague < 0 else c.max_vague, pre_rejected=cut,
                                   change_words=self.ctx.change_words(item))
        return Written(check, "\n".join(raws), demo_ids, all(getattr(r, "cached", False) for r in results))


class TemplateWriter:
    """Deterministic short instructions from the captions and labels (else the note's target part).
    Rows it writes carry `writer_used = "template:"`; rows it completes for a line-mode model writer
    carry `template:+<model spec>`."""

    uses_model = False
    mode = "template"
    spec = "template:"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    async def write(self, item: PairItem, description: str, attempt: int) -> Written:
        c = self.ctx.config
        candidates = template.instructions(item.source_caption, item.source_label, item.target_caption,
                                           item.target_label, description)
        candidates = [t if len(t) <= c.max_chars else t[: c.max_chars - 1].rsplit(" ", 1)[0] + "." for t in candidates]
        check = check_instructions(candidates, description, min_count=c.min_instructions,
                                   max_count=c.max_instructions, max_chars=c.max_chars, min_words=c.min_words)
        if not candidates:
            check.reason = "template: no caption, label or note for the target"
        return Written(check, "\n".join(candidates))


class ChangesWriter:
    """Instructions that ask for the stated change(s), in varied wording (no model). Rows it writes
    carry `writer_used = "changes:"`."""

    uses_model = False
    mode = "template"
    spec = "changes:"

    def __init__(self, ctx: RoleContext) -> None:
        self.ctx = ctx

    async def write(self, item: PairItem, description: str, attempt: int) -> Written:
        c = self.ctx.config
        p = self.ctx.pair_changes(item)
        rng = derived_rng(c.seed, item.query_id, item.target_id, "write_changes", attempt)
        candidates = changes_mod.instructions(p, rng, c.max_instructions)
        check = check_instructions(candidates, description, min_count=c.min_instructions,
                                   max_count=c.max_instructions, max_chars=c.max_chars, min_words=1,
                                   relation_parts=template.note_parts(description),
                                   change_words=changes_mod.change_words(p))
        if not candidates:
            check.reason = NO_CHANGE
        return Written(check, "\n".join(candidates))


DESCRIBERS: Registry[Describer] = Registry("describer")
WRITERS: Registry[Writer] = Registry("writer")


def _check_captions(arg: str) -> None:
    from megapairs.annotate.llm import GENERATORS

    if split_spec(arg)[0] != "template":
        GENERATORS.check(arg, "")


@DESCRIBERS.register("captions", check=_check_captions)
def _captions(arg: str, ctx: RoleContext) -> Describer:
    if split_spec(arg)[0] == "template":
        return TemplateDescriber(ctx)
    return CaptionDescriber(ctx.generator(arg), ctx)


@DESCRIBERS.register("template")
def _template_describer(arg: str, ctx: RoleContext) -> Describer:
    return TemplateDescriber(ctx)


@DESCRIBERS.register("changes")
def _changes_describer(arg: str, ctx: RoleContext) -> Describer:
    return ChangesDescriber(ctx)


@WRITERS.register("changes")
def _changes_writer(arg: str, ctx: RoleContext) -> Writer:
    return ChangesWriter(ctx)


@WRITERS.register("template")
def _template_writer(arg: str, ctx: RoleContext) -> Writer:
    return TemplateWriter(ctx)


def writer_mode(config: AnnotateConfig, gen: Generator) -> str:
    """`line` or `list`: the configured mode, or for `auto` line on completion endpoints."""
    if config.writer_mode != "auto":
        return config.writer_mode
    return "line" if _completion_style(gen) else "list"


# Generators that only complete text (no image input): a describer uses them through `captions:`.
TEXT_ONLY_GENERATORS = ("llamacpp", "openai-completions")


def _register_generator_prefixes() -> None:
    import megapairs.annotate.client  # noqa: F401  (the generator modules register their prefixes)
    import megapairs.annotate.hf_vlm  # noqa: F401
    import megapairs.annotate.llamacpp  # noqa: F401
    from megapairs.annotate.llm import GENERATORS

    for prefix in GENERATORS.prefixes():
        def check_describer(arg: str, _p: str = prefix) -> None:
            if _p in TEXT_ONLY_GENERATORS:  # what ImageDescriber would refuse when the stage starts
                raise SpecError(f"describer {_p}:{arg} cannot take images; use captions:{_p}:{arg}")
            GENERATORS.check(f"{_p}:{arg}", "")

        def image_describer(arg: str, ctx: RoleContext, _p: str = prefix) -> Describer:
            return ImageDescriber(ctx.generator(f"{_p}:{arg}"), ctx)

        def model_writer(arg: str, ctx: RoleContext, _p: str = prefix) -> Writer:
            gen = ctx.generator(f"{_p}:{arg}")
            if writer_mode(ctx.config, gen) == "line":
                return LineWriter(gen, ctx)
            return ModelWriter(gen, ctx)

        DESCRIBERS.register(prefix, check=check_describer)(image_describer)
        WRITERS.register(prefix, check=lambda arg, _p=prefix: GENERATORS.check(f"{_p}:{arg}", ""))(model_writer)


_register_generator_prefixes()


def build_describer(spec: str, ctx: RoleContext) -> Any:
    return DESCRIBERS.build(spec, ctx=ctx)


def build_writer(spec: str, ctx: RoleContext) -> Any:
    return WRITERS.build(spec, ctx=ctx)
