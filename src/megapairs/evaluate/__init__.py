"""Protocol-exact zero-shot CIR benchmarks (CIRCO, CIRR, FashionIQ, GeneCIS, MMEB) and held-out triplets.

`from megapairs.evaluate import evaluate` runs one benchmark; see docs/evaluate.md. Importing this
package is cheap: the runner (numpy, FAISS, torch) loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "EvalOptions", "BENCHMARKS"]


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "BENCHMARKS"):
        from megapairs.evaluate import runner

        return getattr(runner, name)
    if name == "EvalOptions":
        from megapairs.evaluate.common import EvalOptions

        return EvalOptions
    raise AttributeError(name)
