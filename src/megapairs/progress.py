"""Progress for long work: items/s and ETA on stderr, plus where the time went.

`Progress` is the bar (a live tqdm bar on a terminal, a plain line every `log_every_s` in logs).
Code deep inside a shard reports with `advance(n)`: the executor running the shard routes it to
its bar (`reporting_to`), also from a process-pool worker (through a queue), so a shard of 2,000
images moves the bar as batches finish instead of once at the end. Without a listener `advance`
does nothing.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm


class Progress:
    """A tqdm bar in items, plus named timers (`with p.timer("read"): ...`) reported at the end."""

    def __init__(self, total: int, desc: str, unit: str = "img", disable: bool = False,
                 log_every_s: float = 10.0) -> None:
        # A live bar on a terminal; plain lines every `log_every_s` in logs and CI.
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=2.0,
                        disable=disable or not self.tty, dynamic_ncols=True)
        self.desc, self.unit, self.total, self.done = desc, unit, total, 0
        self.quiet = disable
        self.log_every_s = log_every_s
        self.timers: dict[str, float] = defaultdict(float)
        self.start = self.last_log = time.perf_counter()

    def update(self, n: int = 1, **postfix: object) -> None:
        self.done += n
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(n)
        now = time.perf_counter()
        if not self.tty and not self.quiet and now - self.last_log >= self.log_every_s:
            self.last_log = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            extra = " ".join(f"{k}={v}" for k, v in postfix.items())
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s, "
                  f"ETA {eta:.0f}s) {extra}".rstrip(), file=sys.stderr, flush=True)

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timers[name] += time.perf_counter() - t0

    def close(self) -> dict[str, float]:
        self.bar.close()
        wall = time.perf_counter() - self.start
        out = {"wall_s": round(wall, 3), **{f"{k}_s": round(v, 3) for k, v in self.timers.items()}}
        if not self.quiet:
            parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.timers.items())
            print(f"{self.desc}: {self.done} {self.unit} in {wall:.1f}s"
                  f"{f' ({parts})' if parts else ''}", file=sys.stderr, flush=True)
        return out


# Units of each pipeline stage's shard sizes (ShardTask.size), by artifact name.
STAGE_UNITS = {"corpus": "img", "embeddings": "img", "pairs": "query", "annotations": "pair", "dataset": "triplet"}

_listener: Callable[[int], None] | None = None


def advance(n: int = 1) -> None:
    """`n` more items of the current shard are done (a no-op unless an executor listens)."""
    if _listener is not None and n:
        _listener(n)


@contextmanager
def reporting_to(listener: Callable[[int], None] | None) -> Iterator[None]:
    """Route `advance` calls made in this process to `listener` while the block runs."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous


class ShardCounter:
    """Moves a bar by within-shard reports and tops each shard up to its size when it finishes,
    so a shard that reports nothing (or only part) still counts in full, and never twice."""

    def __init__(self, bar: Progress, sizes: dict[int, int]) -> None:
        self.bar = bar
        self.sizes = sizes  # shard index -> items
        self.seen: dict[int, int] = {}
        self.finished: set[int] = set()

    def report(self, shard: int, n: int) -> None:
        if shard in self.finished:
            return
        n = min(n, self.sizes.get(shard, 0) - self.seen.get(shard, 0))
        if n > 0:
            self.seen[shard] = self.seen.get(shard, 0) + n
            self.bar.update(n)

    def finish(self, shard: int) -> None:
        if shard not in self.finished:
            self.finished.add(shard)
            self.bar.update(max(0, self.sizes.get(shard, 0) - self.seen.get(shard, 0)))
