"""Annotate pairs: describer chain, then writer chain, with validation and recorded fallbacks.

`Annotator(config, cache_path=...)` builds the backends once (a `llamacpp:` spec starts its server
here) and `annotate_sync(items)` returns one row per item, in order. A row always exists: when every
writer fails, `status` is "failed" and `reason` says why. A backend that is *unavailable* mid-run
(server down after the retries) raises `BackendError` instead, so that the shard is not written; the
rerun replays every finished request from the disk cache and sends only the rest.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from megapairs.annotate.cache import RequestCache
from megapairs.annotate.client import CachedGenerator, UsageStats
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llm import BackendError, BackendUnavailable, GenOptions, Generator, build_generator
from megapairs.annotate.prompts import PromptSet
from megapairs.annotate.roles import (NO_CHANGE, Describer, PairItem, RoleContext, Writer, build_describer,
                                      build_writer, derived_rng)
from megapairs.annotate.validate import norm
from megapairs.progress import Progress

log = logging.getLogger("megapairs")

# status: "ok" (instructions written; `fallback` tells whether a fallback backend was needed),
# "describe_failed" or "write_failed" (no instructions; `reason` says why), "no_change" (the
# `changes:` describer found no describable difference: the pair is dropped, not restated).
# `instruction_writers` names the writer of each instruction; `template_filled` counts the ones the
# template wrote (a line-mode model writer that wrote too few gets only the missing ones from it).
ROW_FIELDS = ("query_id", "target_id", "instructions", "description", "word_limit", "status", "fallback", "reason",
              "describer", "writer", "describer_used", "writer_used", "writer_attempts", "demo_ids", "rejected",
              "raw_output", "prompt_version", "instruction_writers", "template_filled")


class Annotator:
    def __init__(self, config: AnnotateConfig, *, cache_path: Path | str | None = None,
                 generator_factory: Any = build_generator) -> None:
        self.config = config
        self.prompts = PromptSet(config.prompt_version, config.demo_pool, config.line_demo_pool)
        self.stats = UsageStats()
        self.cache = RequestCache(cache_path)
        self._factory = generator_factory
        self._generators: dict[str, CachedGenerator] = {}
        self.unavailable: dict[str, str] = {}
        ctx = RoleContext(config, self.prompts, self._generator)
        self.describers: list[Describer] = self._chain(build_describer, [config.describer, *config.describer_fallbacks], ctx)
        self.writers: list[Writer] = self._chain(build_writer, [config.writer, *config.writer_fallbacks], ctx)
        # A row has fallback=False only when the configured first choices made it.
        self._primary = {id(r[0]) for r, spec in ((self.describers, config.describer), (self.writers, config.writer))
                         if r and spec not in self.unavailable}
        if not self.describers or not self.writers:
            self.close()
            raise BackendUnavailable(f"no usable describer or writer: {self.unavailable}")
        self.needs_images = any(d.needs_images for d in self.describers)
        # the largest image any describer wants (a VLM: image_max_side; the pixel tests: small)
        self.image_side = max((getattr(d, "image_side", config.image_max_side) for d in self.describers
                               if d.needs_images), default=config.image_max_side)
        self._ctx = ctx

    # -- backends -----------------------------------------------------------------------------
    def _generator(self, spec: str) -> Generator:
        if spec not in self._generators:
            c = self.config
            opts = GenOptions(api_key=c.api_key, timeout_s=c.timeout_s, retries=c.retries, backoff_s=c.backoff_s,
                              backoff_max_s=c.backoff_max_s, concurrency=c.concurrency,
                              llamacpp_threads=c.llamacpp_threads, llamacpp_parallel=c.llamacpp_parallel)
            self._generators[spec] = CachedGenerator(self._factory(spec, opts), self.cache, c.concurrency, self.stats)
        return self._generators[spec]

    def _chain(self, build: Any, specs: list[str], ctx: RoleContext) -> list[Any]:
        out = []
        for spec in dict.fromkeys(specs):
            try:
                out.append(build(spec, ctx))
            except BackendUnavailable as e:
                if self.config.strict_backends:
                    raise
                self.unavailable[spec] = str(e)
                log.warning("annotate: backend %r is unavailable and is skipped (%s); falling back to the next "
                            "in the chain", spec, e)
        return out

    # -- one pair -------------------------------------------------------------------------------
    async def annotate_one(self, item: PairItem) -> dict[str, Any]:
        c = self.config
        word_limit = derived_rng(c.seed, item.query_id, item.target_id, "words").randint(*c.word_range)
        notes: list[str] = [f"unavailable {s}" for s in self.unavailable]
        row: dict[str, Any] = {"query_id": item.query_id, "target_id": item.target_id, "instructions": [],
                               "description": "", "word_limit": word_limit, "status": "describe_failed",
                               "fallback": False, "reason": "", "describer": c.describer, "writer": c.writer,
                               "describer_used": "", "writer_used": "", "writer_attempts": 0, "demo_ids": [],
                               "rejected": [], "raw_output": "", "prompt_version": self.prompts.version,
                               "instruction_writers": [], "template_filled": 0}
        describer = await self._describe(item, word_limit, row, notes)
        if describer is None and notes and notes[-1].endswith(NO_CHANGE):
            row["status"] = "no_change"
        elif describer is not None:
            row["status"] = "write_failed"
            writer = await self._write(item, row, notes)
            if writer is not None:
                row["status"] = "ok"
                row["fallback"] = not (id(describer) in self._primary and id(writer) in self._primary)
        row["reason"] = "; ".join(notes)
        self._ctx.forget(item)
        return row

    async def _describe(self, item: PairItem, word_limit: int, row: dict[str, Any], notes: list[str]) -> Any:
        """First describer whose note passes the checks (filled into `row`), or None."""
        for d in self.describers:
            try:
                out = await d.describe(item, word_limit)
            except BackendError as e:
                if e.unavailable:
                    raise
                notes.append(f"describe {d.spec}: {e}")
                continue
            if out.reason:
                notes.append(f"describe {d.spec}: {out.reason}")
                if out.reason == NO_CHANGE:  # a verdict on the pair, not a failure to fall back from
                    return None
                continue
            row["description"], row["describer_used"] = out.text, d.spec
            return d
        return None

    async def _write(self, item: PairItem, row: dict[str, Any], notes: list[str]) -> Any:
        """First writer (model writers get `writer_attempts` tries) whose output passes, or None.

        A line-mode writer keeps its valid instructions across tries. When it ends with some but fewer
        than `min_instructions`, a later `template:` writer only adds the missing ones
        (`writer_used = "template:+<spec>"`); otherwise the chain moves on as in list mode."""
        c = self.config
        partial: tuple[Any, list[str]] | None = None
        for w in self.writers:
            if not w.uses_model and partial is not None:
                out = await w.write(item, row["description"], 0)
                row["writer_attempts"] += 1
                model, have = partial
                seen = {norm(t) for t in have}
                fill = [t for t in out.check.instructions if norm(t) not in seen][: c.min_instructions - len(have)]
                if len(have) + len(fill) >= c.min_instructions:
                    row["instructions"] = have + fill
                    row["instruction_writers"] = [model.spec] * len(have) + [w.spec] * len(fill)
                    row["template_filled"] = len(fill)
                    row["writer_used"] = f"{w.spec}+{model.spec}"
                    return w
            prior: list[str] = []
            for attempt in range(c.writer_attempts if w.uses_model else 1):
                row["writer_attempts"] += 1
                try:
                    if w.mode == "line":
                        out = await w.write(item, row["description"], attempt, prior)
                    else:
                        out = await w.write(item, row["description"], attempt)
                except BackendError as e:
                    if e.unavailable:
                        raise
                    notes.append(f"write {w.spec}: {e}")
                    break
                row["rejected"] += [f"{why}: {text}" for text, why in out.check.rejected]
                if w.uses_model:
                    if w.mode == "line" and attempt:
                        row["raw_output"] += "\n" + out.raw
                        row["demo_ids"] += [d for d in out.demo_ids if d not in row["demo_ids"]]
                    else:
                        row["raw_output"], row["demo_ids"] = out.raw, out.demo_ids
                if out.check.ok:
                    row["instructions"], row["writer_used"] = out.check.instructions, w.spec
                    row["instruction_writers"] = [w.spec] * len(out.check.instructions)
                    row["template_filled"] = len(out.check.instructions) if not w.uses_model else 0
                    if out.check.reason:
                        notes.append(f"write {w.spec}: {out.check.reason}")
                    return w
                notes.append(f"write {w.spec} try {attempt + 1}: {out.check.reason}")
                if w.mode == "line":
                    prior = out.check.instructions
            if w.mode == "line" and prior and partial is None:
                partial = (w, prior)
        return None

    # -- many pairs -----------------------------------------------------------------------------
    async def annotate(self, items: list[PairItem], desc: str = "annotate") -> list[dict[str, Any]]:
        rows: list[dict[str, Any] | None] = [None] * len(items)
        gate = asyncio.Semaphore(self.config.concurrency * 2)
        progress = Progress(total=len(items), desc=desc, unit="pair", disable=not self.config.progress)
        counts = {"fallback": 0, "failed": 0, "no_change": 0}

        async def one(i: int, item: PairItem) -> None:
            async with gate:
                rows[i] = row = await self.annotate_one(item)
            counts["fallback"] += int(row["fallback"])
            counts["failed"] += int(row["status"] not in ("ok", "no_change"))
            counts["no_change"] += int(row["status"] == "no_change")
            s = self.stats
            progress.update(1, tok=s.prompt_tokens + s.completion_tokens, req=s.requests, cached=s.cache_hits,
                            fallback=counts["fallback"], failed=counts["failed"], no_change=counts["no_change"])

        try:
            async with asyncio.TaskGroup() as tg:
                for i, item in enumerate(items):
                    tg.create_task(one(i, item))
        except BaseExceptionGroup as eg:
            first = eg.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        finally:
            progress.close()
            for g in self._generators.values():
                await g.aclose()
        return [r for r in rows if r is not None]

    def annotate_sync(self, items: list[PairItem], desc: str = "annotate") -> list[dict[str, Any]]:
        return asyncio.run(self.annotate(items, desc))

    def info(self) -> dict[str, Any]:
        """For the manifest: what ran, what was skipped, token use (no secrets)."""
        return {"describers": [d.spec for d in self.describers], "writers": [w.spec for w in self.writers],
                "writer_modes": {w.spec: w.mode for w in self.writers},
                "unavailable": dict(self.unavailable), "prompt_version": self.prompts.version,
                "prompt_fingerprint": self.prompts.fingerprint, "usage": self.stats.as_dict()}

    def close(self) -> None:
        for g in self._generators.values():
            g.close()
        self._generators.clear()
        self.cache.close()

    def __enter__(self) -> "Annotator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
