"""`mine.require_change`: keep only pairs whose change can be stated from evidence.

The `changes:` describer (annotate/changes.py) states what differs between two images from their
titles, file names and pixels. Run at mining time on every in-band candidate, it turns mining into a
search for *describable* pairs (the same thing with a changed attribute) instead of pairs that are
merely similar: each query keeps its best candidates that have a stated change, up to the cap. The
pixel statistics of an image are computed once per worker (small renders, a few ms each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from megapairs.artifacts import Artifact


class ChangeJudge:
    """Says for (query id, target id) pairs whether a change can be stated. Reads the corpus through
    the annotate stage's `CorpusLookup`, and computes pixel statistics on the same small renders the
    `changes:` describer sees, so mining and annotation judge a pair alike."""

    def __init__(self, root: Path) -> None:
        from megapairs.annotate.stage import CorpusLookup

        self.corpus = CorpusLookup(Artifact(Path(root) / "corpus"))
        self._pixels: dict[str, Any] = {}

    def _stats(self, ids: set[str]) -> None:
        from megapairs.annotate.pixels import pixel_stats
        from megapairs.annotate.roles import ChangesDescriber

        missing = ids - self._pixels.keys()
        renders = self.corpus.images(missing, ChangesDescriber.image_side)
        for i in missing:
            try:
                self._pixels[i] = pixel_stats(renders[i]) if i in renders else None
            except Exception:  # noqa: BLE001 - no pixels: the metadata alone decides
                self._pixels[i] = None

    def _meta(self, i: str) -> tuple[str, str, str]:
        return (*self.corpus.text.get(i, ("", "")), self.corpus.uri.get(i, ""))

    def judge(self, q_ids: list[str], t_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """(P,) bool: a change can be stated; and the kinds of the first change (or '')."""
        from megapairs.annotate.changes import metadata_pair_changes

        self._stats(set(q_ids) | set(t_ids))
        ok = np.zeros(len(q_ids), bool)
        kinds = []
        for k, (q, t) in enumerate(zip(q_ids, t_ids)):
            p = metadata_pair_changes(self._meta(q), self._meta(t), self._pixels.get(q), self._pixels.get(t))
            ok[k] = p.describable
            kinds.append(p.changes[0].kind if p.changes else "")
        return ok, kinds


def keep_describable(columns: dict[str, Any], judge: ChangeJudge, max_targets: int) -> tuple[dict[str, Any], dict]:
    """Columns of `select_pairs` (uncapped, best first per query) -> the describable ones, capped
    per query, `pair_rank` renumbered; and counts for the manifest."""
    ok, kinds = judge.judge(columns["query_id"], columns["target_id"])
    q = np.asarray(columns["query_id"], dtype=object)
    idx = np.flatnonzero(ok)
    rank = np.zeros(len(idx), np.int32)
    seen: dict[str, int] = {}
    keep = []
    for j, i in enumerate(idx):
        n = seen.get(q[i], 0)
        if n < max_targets:
            keep.append(j)
            rank[j] = n
            seen[q[i]] = n + 1
    take = idx[keep]
    out = {k: (v[take] if isinstance(v, np.ndarray) else [v[i] for i in take]) for k, v in columns.items()}
    out["pair_rank"] = rank[keep].astype(np.int32)
    counts = {"candidates": len(q), "describable_candidates": int(ok.sum()), "kept": len(take)}
    for i in take:
        counts[f"kept_{kinds[i]}"] = counts.get(f"kept_{kinds[i]}", 0) + 1
    return out, counts
