"""The mine stage: per-view KNN over the embeddings -> pairs artifact.

The driver builds (or reuses) the `mine_index` artifact once in `plan()`; workers memory-map it
and the float16 embeddings, so a worker's own memory is the ids plus one query shard's results.

Rows: query_id, target_id, found_by (list), best_view, best_score, score_<view> for every view,
hard_negatives (list of ids, [0] = query_id), pair_rank.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import pyarrow as pa

from megapairs.artifacts import Artifact, ArtifactError, open_complete, write_table
from megapairs.embed.store import open_embeddings, open_views
from megapairs.mine.config import MineConfig
from megapairs.mine.describable import ChangeJudge, keep_describable
from megapairs.mine.index import INDEX_ARTIFACT, SEARCH_BLOCK, MineIndex, ensure_index, open_index
from megapairs.mine.select import HIST_BINS, PairSelector
from megapairs.stages import ShardTask, Stage, sum_marker_counts

QUANTILE_SAMPLE = 2000
# queries per pipeline step: FAISS searches one step (on a thread; it releases the GIL) while the
# pairs of the step before are selected, so the mostly single-threaded selection uses the core
# FAISS would leave idle between its calls. One SEARCH_BLOCK: one FAISS call per view and step.
PIPELINE_BLOCK = SEARCH_BLOCK
T = TypeVar("T")
R = TypeVar("R")


def prefetched(fn: Callable[[T], R], items: list[T]) -> Iterator[R]:
    """fn(item) for each item in order, the next one computed on a thread while the caller
    consumes the current one (at most one ahead: memory stays two items)."""
    if not items:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="mine-search") as pool:
        ahead: Future = pool.submit(fn, items[0])
        for item in items[1:]:
            current = ahead.result()
            ahead = pool.submit(fn, item)
            yield current
        yield ahead.result()


def pairs_schema(views: list[str]) -> pa.Schema:
    return pa.schema([
        ("query_id", pa.string()), ("target_id", pa.string()), ("found_by", pa.list_(pa.string())),
        ("best_view", pa.string()), ("best_score", pa.float32()),
        *[(f"score_{v}", pa.float32()) for v in views],
        ("hard_negatives", pa.list_(pa.string())), ("pair_rank", pa.int32()),
    ])


def query_rows(n: int, num_queries: int | None, seed: int) -> np.ndarray:
    if num_queries is None or num_queries >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=num_queries, replace=False))


class MineStage(Stage):
    name = "pairs"
    kind = "pairs"
    inputs = ("embeddings",)
    config: MineConfig

    def _views(self) -> list[str]:
        views = list(self.input_artifact("embeddings").manifest()["views"])
        missing = [v for v in views if v not in self.config.bands]
        if missing:
            raise ValueError(f"mine.bands has no band for view(s) {missing}; set mine.bands.<view>=[low, high]")
        return views

    def _open(self) -> dict[str, MineIndex]:
        vectors = open_views(self.root / "embeddings", self._views())
        return open_index(self.root, vectors, self.config.device)

    def resolve_bands(self, indexes: dict[str, MineIndex]) -> dict[str, tuple[float, float]]:
        """Score bands: given, or the configured quantiles of each view's neighbour scores over a
        seeded sample of QUANTILE_SAMPLE queries, searched in the saved index."""
        c = self.config
        if c.band_units == "score":
            return {v: (float(c.bands[v][0]), float(c.bands[v][1])) for v in indexes}
        out = {}
        for v, index in indexes.items():
            n = len(index.vectors)
            sample = query_rows(n, min(n, QUANTILE_SAMPLE), c.seed)
            s, r = index.search(index.vectors[sample], c.k + 1)
            vals = s[(r >= 0) & (r != sample[:, None])]
            lo, hi = np.quantile(vals, c.bands[v]) if len(vals) else (1.0, 1.0)
            out[v] = (round(float(lo), 6), round(float(hi), 6))
        return out

    def plan(self) -> list[ShardTask]:
        c = self.config
        emb = self.input_artifact("embeddings")
        ensure_index(self.root, open_views(emb.path, self._views()), c, str(emb.config_hash))
        bands = self.resolve_bands(self._open())
        n_rows = len(query_rows(emb.manifest()["rows"], c.num_queries, c.seed))
        n = self._shard_size(n_rows)
        # Payloads are row ranges into `query_rows` (recomputed by workers): small at any scale.
        return [ShardTask(i // n, {"lo": i, "hi": min(i + n, n_rows), "bands": bands, "shard_size": n},
                          min(n, n_rows - i)) for i in range(0, n_rows, n)]

    def _shard_size(self, n_rows: int) -> int:
        """mine.query_shard_size, unless finished shards of an interrupted run used another: the
        size is not hashed (the pairs do not depend on it), but a resumed run must keep the row
        ranges of the shards already written, or it would write some queries twice and skip others."""
        art = self.output()
        done = [art.marker(i) | {"index": i} for i in art.done_shards()]
        recorded = {int(m["shard_size"]) for m in done if "shard_size" in m}
        if recorded:
            return recorded.pop()
        n = self.config.query_shard_size
        for m in done:  # markers written before the size was recorded: check them against it
            if int(m.get("queries", -1)) != min(n, max(n_rows - m["index"] * n, 0)):
                raise ArtifactError(f"{art.path}: shard {m['index']} was written with another "
                                    f"mine.query_shard_size than {n}; resume with that one or delete the folder")
        return n

    def make_worker(self):
        c = self.config
        views = self._views()
        ids, mats = open_embeddings(self.root / "embeddings", views)
        indexes = open_index(self.root, mats, c.device)
        rows = query_rows(len(ids), c.num_queries, c.seed)
        id_arr = pa.array(ids, pa.string())  # once per worker: each shard's id columns are taken from it
        art = self.output()
        schema = pairs_schema(views)
        judge = ChangeJudge(self.root) if c.require_change else None

        def search(q_block: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
            q_vecs = {v: mats[v][q_block] for v in views}  # (B, D) float32: read once, searched and scored
            return q_block, q_vecs, {v: indexes[v].search(q_vecs[v], c.k + 1) for v in views}  # (B, k+1) each

        def work(task: ShardTask) -> None:
            q = rows[task.payload["lo"] : task.payload["hi"]].astype(np.int64)
            cap = c.k * len(views) if judge else c.max_targets_per_query
            selector = PairSelector(views, task.payload["bands"], mats, ids if judge else id_arr,
                                    near_duplicate=c.near_duplicate, max_targets=cap,
                                    num_hard_negatives=c.num_hard_negatives, seed=c.seed)
            blocks = [q[i : i + PIPELINE_BLOCK] for i in range(0, len(q), PIPELINE_BLOCK)]
            for q_block, q_vecs, knn in prefetched(search, blocks):
                selector.add(q_block, knn, q_vecs)
            columns, stats = selector.result(arrow=judge is None)  # keep_describable takes lists
            changes: dict[str, Any] = {}
            if judge is not None:  # mine.require_change: the best describable candidates, capped
                columns, changes = keep_describable(columns, judge, c.max_targets_per_query)
            table = pa.table(columns, schema=schema)
            write_table(art.shard_path(task.index), table)
            art.mark_done(task.index, table.num_rows, [art.shard_path(task.index).name], queries=len(q),
                          shard_size=task.payload["shard_size"],
                          kept_by_view=stats.kept_by_view, dropped=stats.dropped,
                          hist_kept=stats.hist_kept, hist_all=stats.hist_all, changes=changes)

        return work

    def finalize(self, artifact: Artifact, tasks: list[ShardTask]) -> dict[str, Any]:
        markers = [artifact.marker(t.index) for t in tasks]
        views = self._views()
        hist = {kind: {v: np.sum([m[kind][v] for m in markers], axis=0).astype(int).tolist() if markers else []
                       for v in views} for kind in ("hist_kept", "hist_all")}
        emb = self.input_artifact("embeddings").manifest()
        index = open_complete(self.root / INDEX_ARTIFACT).manifest()
        keys = ("kind", "factory", "nlist", "nprobe", "ef_search", "refine_factor", "bytes", "expected_recall")
        return {
            "views": {v: emb["views"][v]["spec"] for v in views},
            "bands": tasks[0].payload["bands"] if tasks else {},
            "band_units": self.config.band_units,
            "index": {v: {k: info[k] for k in keys if k in info} for v, info in index["indexes"].items()},
            "index_config_hash": index["config_hash"],
            "queries": int(sum(m["queries"] for m in markers)),
            "pairs_by_view": sum_marker_counts(artifact, tasks, "kept_by_view"),
            "dropped": sum_marker_counts(artifact, tasks, "dropped"),
            "require_change": self.config.require_change,
            "changes": sum_marker_counts(artifact, tasks, "changes"),
            "histogram_bins": HIST_BINS.round(3).tolist(),
            "score_histograms": hist,
        }
