"""Paired bootstrap over queries: a seeded 95 % interval for the difference of two per-query scores.

    from megapairs.evaluate.bootstrap import paired_bootstrap, compare_results
    paired_bootstrap(a, b)            # a, b: per-query values (Q,), same queries in the same order
    -> {"diff": mean(b) - mean(a), "low": ..., "high": ..., "confidence": 0.95, "resamples": 1000,
        "seed": 0, "queries": Q}
    compare_results(result_a, result_b, "composed/R@1")   # two `evaluate("triplets", ...)` results

The queries are resampled with replacement, the same draw for both sides (that is the pairing);
the interval is the percentile interval of the resampled mean differences. Values keep their unit
(per-query recall hits are 0 / 100, so a difference is in percentage points).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, resamples: int = 1000,
                     seed: int = 0, confidence: float = 0.95, chunk: int = 256) -> dict[str, Any]:
    """Interval of mean(b) - mean(a) from `resamples` paired resamples of the queries (seeded)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired bootstrap needs two per-query vectors of one length, got {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    diff = b - a  # (Q,)
    out: dict[str, Any] = {"diff": float(diff.mean()) if len(diff) else float("nan"), "low": float("nan"),
                           "high": float("nan"), "confidence": confidence, "resamples": int(resamples),
                           "seed": int(seed), "queries": int(len(diff))}
    if resamples < 1 or len(diff) == 0:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):  # bounded memory: chunk x Q indices at a time
        n = min(chunk, resamples - start)
        idx = rng.integers(0, len(diff), size=(n, len(diff)))  # (n, Q)
        means[start:start + n] = diff[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    out["low"], out["high"] = (float(v) for v in np.quantile(means, [tail, 1 - tail]))
    return out


def compare_results(result_a: Mapping[str, Any], result_b: Mapping[str, Any], metric: str = "composed/R@1",
                    **kwargs: Any) -> dict[str, Any]:
    """B - A on one triplet metric of two `evaluate("triplets", ...)` results over the same held-out set
    (their `details["per_query"]` and `details["units"]` must match)."""
    units_a, units_b = result_a["details"].get("units"), result_b["details"].get("units")
    if units_a is None or units_a != units_b:
        raise ValueError("the two results do not score the same queries (details['units'] differ); "
                         "evaluate both models on the same triplets with the same options")
    mode, name = metric.split("/", 1)
    a = result_a["details"]["per_query"][mode][name]
    b = result_b["details"]["per_query"][mode][name]
    return {"metric": metric, "a": result_a.get("model"), "b": result_b.get("model"),
            **paired_bootstrap(a, b, **kwargs)}
