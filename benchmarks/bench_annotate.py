"""Annotation throughput against the same llama.cpp server driven by a plain concurrent client.

    python benchmarks/bench_annotate.py --run /tmp/mp/demo2000 --pairs 24

It reads `pairs/` and `corpus/` of a finished run and builds the annotator (template describer, the
packaged Gemma-3-270M writer behind llama.cpp, line mode). Every measurement gets a fresh llama.cpp
server with the same model, threads and slots, warmed up with the requests of one pair outside the
measured set (a server that has seen a prompt before may answer it from its prompt cache, which
would flatter whichever measurement comes second):

1. annotator: `annotate_sync` on the pairs with a fresh request cache; every request it sends is
   recorded, in order (first rounds, and the second rounds of pairs that needed one);
2. plain client: the recorded requests (same prompts, seeds, sampling and order), posted with bare
   httpx at each concurrency level of `--levels`; the best requests/s is the ceiling;
3. annotator again with another fresh cache (the machine may be shared: each side counts with the
   better of its measurements);
4. cached rerun: an annotator on the first cache; it must send zero requests.

Prints a Markdown table. Targets: annotator/ceiling >= 0.9 (requests/s); cached rerun: 0 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from megapairs.annotate.annotator import Annotator
from megapairs.annotate.config import AnnotateConfig
from megapairs.annotate.llamacpp import LlamaCppServer, resolve_model
from megapairs.annotate.roles import LineWriter, PairItem, derived_rng
from megapairs.annotate.stage import CorpusLookup
from megapairs.artifacts import open_complete


def load_items(run: Path, n: int) -> list[PairItem]:
    pairs = open_complete(run / "pairs").read_all(["query_id", "target_id"]).to_pylist()[:n]
    lookup = CorpusLookup(open_complete(run / "corpus"))
    return lookup.items(pairs, with_images=False, max_side=64)


def plan(annotator: Annotator, items: list[PairItem]) -> list[dict[str, Any]]:
    """The request bodies of the annotator's first line-mode round, in pair order."""
    writer = next(w for w in annotator.writers if isinstance(w, LineWriter))
    describer = annotator.describers[0]
    c = annotator.config
    inner = writer.gen.inner  # type: ignore[attr-defined]
    bodies = []
    for it in items:
        limit = derived_rng(c.seed, it.query_id, it.target_id, "words").randint(*c.word_range)
        note = asyncio.run(describer.describe(it, limit)).text
        for req, *_ in writer.requests(it, note, 0, c.min_instructions + c.line_spare):
            bodies.append(inner.body(req))
    return bodies


def fresh_server(cfg: AnnotateConfig, alias: str, warmup: list[dict[str, Any]]) -> LlamaCppServer:
    server = LlamaCppServer(resolve_model(alias), threads=cfg.llamacpp_threads, parallel=cfg.llamacpp_parallel).start()
    asyncio.run(plain_client(server.base_url, warmup, 1))
    return server


async def plain_client(url: str, bodies: list[dict[str, Any]], concurrency: int) -> tuple[float, int]:
    """Seconds to answer every body with `concurrency` requests in flight, and completion tokens."""
    sem = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        nonlocal tokens
        async with sem:
            r = await client.post(f"{url}/completions", json=body)
            r.raise_for_status()
            tokens += int(r.json().get("usage", {}).get("completion_tokens", 0))

    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, b) for b in bodies))
        return time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("/tmp/mp/demo2000"), help="a run with pairs/ and corpus/")
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--levels", default="1,2,4,8", help="plain-client concurrency levels")
    ap.add_argument("--writer", default="llamacpp:gemma3-270m")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="annotate config overrides")
    args = ap.parse_args()

    overrides: dict[str, Any] = {"describer": "template:", "writer": args.writer, "writer_mode": "line",
                                 "progress": False}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = int(v) if v.lstrip("-").isdigit() else float(v) if v.replace(".", "", 1).isdigit() else v
    cfg = AnnotateConfig.from_dict(overrides)
    if not args.writer.startswith("llamacpp:"):
        raise SystemExit("this benchmark starts its own llama.cpp servers: use a llamacpp: writer")
    alias = args.writer.split(":", 1)[1]
    everything = load_items(args.run, args.pairs + 1)
    items, spare = everything[: args.pairs], everything[args.pairs:]
    tmp = Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    cache = tmp / "cache.sqlite"
    load0 = os.getloadavg()[0]

    sent: list[dict[str, Any]] = []
    warmup: list[dict[str, Any]] = []

    def annotate(cache_file: Path) -> tuple[float, dict[str, int], list[dict[str, Any]]]:
        with Annotator(cfg, cache_path=cache_file) as ann:
            inner = ann._generators[args.writer].inner  # noqa: SLF001 - the server this annotator started
            warmup[:] = warmup or plan(ann, spare)
            asyncio.run(plain_client(inner.base_url, warmup, 1))  # warm-up, as for the plain client
            record = not sent
            original = inner.generate

            async def recording(req: Any) -> Any:
                if record:
                    sent.append(inner.body(req))
                return await original(req)

            inner.generate = recording
            t0 = time.perf_counter()
            out = ann.annotate_sync(items)
            wall = time.perf_counter() - t0
        print(f"annotator: {ann.stats.requests / wall:.2f} req/s", file=sys.stderr)
        return wall, ann.stats.as_dict(), out

    wall, usage, rows = annotate(cache)
    bodies = list(sent)

    def measure(level: int) -> tuple[float, int]:
        server = fresh_server(cfg, alias, warmup)
        try:
            result = asyncio.run(plain_client(server.base_url, bodies, level))
        finally:
            server.stop()
        print(f"plain client, {level} in flight: {len(bodies) / result[0]:.2f} req/s", file=sys.stderr)
        return result

    sweep = {level: measure(level) for level in [int(x) for x in args.levels.split(",")]}
    best = min(sweep, key=lambda k: sweep[k][0])
    wall2, usage2, _ = annotate(tmp / "cache2.sqlite")
    if usage2["requests"] / wall2 > usage["requests"] / wall:
        wall, usage = wall2, usage2
    load1 = os.getloadavg()[0]

    with Annotator(cfg, cache_path=cache) as ann2:
        t0 = time.perf_counter()
        rerun = ann2.annotate_sync(items)
        rerun_wall = time.perf_counter() - t0
        rerun_usage = ann2.stats.as_dict()

    ceiling = len(bodies) / sweep[best][0]
    rate = usage["requests"] / wall
    llm_rows = sum(r["writer_used"] == args.writer for r in rows)
    llm_ins = sum(w == args.writer for r in rows for w in r["instruction_writers"])
    n_ins = sum(len(r["instructions"]) for r in rows)
    print(f"\nAnnotation throughput, {len(items)} pairs from {args.run}, writer {args.writer} (line mode, "
          f"{cfg.min_instructions}+{cfg.line_spare} requests per pair, concurrency {cfg.concurrency}, "
          f"{cfg.llamacpp_parallel} slots), {os.cpu_count()} CPUs, load average {load0:.1f} -> {load1:.1f}\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| plain client, best of {args.levels} in flight | {ceiling:.2f} req/s (at {best}), "
          f"{sweep[best][1] / sweep[best][0]:.1f} completion tok/s |")
    for level, (secs, _) in sorted(sweep.items()):
        print(f"| plain client, {level} in flight | {len(bodies) / secs:.2f} req/s |")
    print(f"| annotator, better of 2 runs | {rate:.2f} req/s, {usage['completion_tokens'] / wall:.1f} completion "
          f"tok/s ({usage['requests']} requests, {wall:.1f} s) |")
    print(f"| **annotator / plain client** | **{rate / ceiling:.2f}** (target >= 0.9) |")
    print(f"| seconds per pair | {wall / len(items):.2f} |")
    print(f"| pairs written by the LLM (>= {cfg.min_instructions} valid) | {llm_rows}/{len(rows)} "
          f"({100 * llm_rows / len(rows):.0f}%) |")
    print(f"| instructions written by the LLM | {llm_ins}/{n_ins} ({100 * llm_ins / max(1, n_ins):.0f}%) |")
    print(f"| cached rerun | {rerun_usage['requests']} requests, {rerun_usage['cache_hits']} cache hits, "
          f"{rerun_wall:.2f} s (target: 0 requests) |")
    print(f"| cached rerun rows identical | {rerun == rows} |")


if __name__ == "__main__":
    main()
