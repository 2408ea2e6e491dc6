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
    """Says for (query id, target id) pairs whether a change can be stated; reads the corpus once."""

    def __init__(self, root: Path) -> None:
        self.corpus = Artifact(Path(root) / "corpus")
        self.where: dict[str, tuple[int, int]] = {}
        self.meta: dict[str, tuple[str, str, str]] = {}
        for s in self.corpus.shard_indices():
            t = self.corpus.read_shard(s, ["id", "caption", "label", "uri"]).to_pydict()
            for r, (i, cap, lab, uri) in enumerate(zip(t["id"], t["caption"], t["label"], t["uri"])):
                self.where[i] = (s, r)
                self.meta[i] = (cap or "", lab or "", uri or "")
        self._pixels: dict[str, Any] = {}

    def _stats(self, ids: set[str]) -> None:
        import pyarrow as pa

        from megapairs.annotate.pixels import pixel_stats
        from megapairs.corpus.images import load_image

        by_shard: dict[int, list[tuple[str, int]]] = {}
        for i in ids - self._pixels.keys():
            if i in self.where:
                s, r = self.where[i]
                by_shard.setdefault(s, []).append((i, r))
        cols = ["id", "uri", "caption", "label", "status", "image_bytes"]
        for s, wanted in by_shard.items():
            table = self.corpus.read_shard(s, cols).take(pa.array([r for _, r in wanted]))
            for row in table.to_pylist():
                try:
                    self._pixels[row["id"]] = pixel_stats(load_image(row))
                except Exception:  # noqa: BLE001 - no pixels: the metadata alone decides
                    self._pixels[row["id"]] = None

    def judge(self, q_ids: list[str], t_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """(P,) bool: a change can be stated; and the kinds of the first change (or '')."""
        from megapairs.annotate.changes import metadata_pair_changes

        self._stats(set(q_ids) | set(t_ids))
        ok = np.zeros(len(q_ids), bool)
        kinds = []
        for k, (q, t) in enumerate(zip(q_ids, t_ids)):
            p = metadata_pair_changes(self.meta.get(q, ("", "", "")), self.meta.get(t, ("", "", "")),
                                      self._pixels.get(q), self._pixels.get(t))
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
