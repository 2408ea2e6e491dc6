"""Progress for long work: items/s and ETA on stderr, plus where the time went."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

from tqdm import tqdm


class Progress:
    """A tqdm bar in items, plus named timers (`with p.timer("read"): ...`) reported at the end."""

    def __init__(self, total: int, desc: str, unit: str = "img", disable: bool | None = None) -> None:
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=2.0,
                        disable=disable, dynamic_ncols=True)
        self.timers: dict[str, float] = defaultdict(float)
        self.start = time.perf_counter()

    def update(self, n: int = 1, **postfix: object) -> None:
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(n)

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
        if self.timers:
            parts = ", ".join(f"{k} {v:.1f}s" for k, v in self.timers.items())
            print(f"{self.bar.desc}: {wall:.1f}s ({parts})", file=sys.stderr)
        return out
