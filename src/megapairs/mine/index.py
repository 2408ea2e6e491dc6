"""Mining indexes chosen to a memory budget, trained once, saved as an artifact, memory-mapped.

One index per view, all in the `mine_index` artifact (`<view>.faiss` + manifest). The driver builds
it once in the mine stage's `plan()` (trained on a sample, vectors added block by block from the
memory-mapped float16 embeddings); every worker and Ray actor then opens the same files with
`faiss.read_index(..., IO_FLAG_MMAP)`, so the inverted lists live in the shared page cache rather
than in each process's anonymous memory.

Kinds and their resident bytes per vector (d = dimension):
  flat      0       exact blockwise search over the float16 vectors (GPU when present)
  ivf_flat  4d + 8  float32 codes
  ivf_sq8   d + 8   8-bit scalar codes, refine_factor * k candidates re-ranked exactly
  ivf_pq    m/2 + 8 4-bit product codes (fast scan), refine_factor * k candidates re-ranked exactly
The two re-ranked kinds are saved as a FAISS `IndexRefine`: the IVF index plus a float16 copy of
the vectors (`IndexScalarQuantizer` QT_fp16, 2d bytes per vector on disk, read with
IO_FLAG_MMAP_IFC so it stays in the page cache), so the exact re-ranking runs inside FAISS
(multithreaded SIMD over the float16 codes) in the same `search` call; its scores are exact inner
products with the float16 vectors, as the flat path's are.
  hnsw      4d + 8M graph over float32 vectors (only when asked for: slow to build at mining scale)
`nprobe` (or HNSW's efSearch) is tuned at build time to the smallest value whose recall@k against
exact search on a query sample reaches `target_recall`; that measured recall goes in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from megapairs.artifacts import Artifact, open_complete
from megapairs.embed.store import Vectors
from megapairs.mine.config import MineConfig, parse_bytes
from megapairs.mine.exact import exact_knn
from megapairs.mine.knn import recall_at_k

INDEX_ARTIFACT = "mine_index"
REFINED = ("ivf_sq8", "ivf_pq")
ADD_BLOCK = 65_536
SEARCH_BLOCK = 4096
INDEX_FORMAT = 2  # 2: refined kinds saved as base + float16 refine files; an older artifact is rebuilt


@dataclass
class IndexChoice:
    kind: str
    nlist: int = 0
    pq_m: int = 0  # ivf_pq: 4-bit sub-quantizers
    bytes: int = 0  # estimated resident index bytes

    def factory(self, hnsw_m: int) -> str:
        return {"ivf_flat": f"IVF{self.nlist},Flat", "ivf_sq8": f"IVF{self.nlist},SQ8",
                "ivf_pq": f"IVF{self.nlist},PQ{self.pq_m}x4fs", "hnsw": f"HNSW{hnsw_m}"}.get(self.kind, "flat")


def default_nlist(n: int, kind: str, nlist: int | None) -> int:
    if nlist:
        return min(nlist, n)
    per = 1.0 if kind == "ivf_pq" else 4.0  # fast-scan codes are cheap to scan: fewer, longer lists
    return max(1, min(int(per * math.sqrt(n)), n // 39 or 1))


def estimate_bytes(kind: str, n: int, d: int, nlist: int = 0, pq_m: int = 0, hnsw_m: int = 32) -> int:
    per = {"flat": 0, "ivf_flat": 4 * d + 8, "ivf_sq8": d + 8, "ivf_pq": pq_m // 2 + 8,
           "hnsw": 4 * d + 8 * hnsw_m + 16}[kind]
    return n * per + nlist * d * 4


def _pq_sizes(d: int) -> list[int]:
    """4-bit sub-quantizer counts to try, most accurate first (each divides d, 2 to 8 dims each)."""
    return [m for m in (d // 2, d // 4, d // 8) if m >= 2 and d % m == 0 and m % 2 == 0]


def choose_index(n: int, d: int, config: MineConfig, budget: int) -> IndexChoice:
    """The index for one view of n vectors of dimension d given its share of the memory budget."""
    kind = "ivf_flat" if config.index == "ivf" else config.index
    if kind == "auto":
        if n < config.approx_threshold:
            return IndexChoice("flat")
        for k in ("ivf_flat", "ivf_sq8"):
            nl = default_nlist(n, k, config.nlist)
            if estimate_bytes(k, n, d, nl) <= budget:
                return IndexChoice(k, nl, 0, estimate_bytes(k, n, d, nl))
        kind = "ivf_pq"
    if kind == "ivf_pq":
        nl = default_nlist(n, kind, config.nlist)
        sizes = _pq_sizes(d)
        if not sizes:
            raise ValueError(f"ivf_pq needs an even dimension, got {d}")
        fits = [m for m in sizes if estimate_bytes(kind, n, d, nl, m) <= budget]
        if not fits and config.index == "auto":
            need = estimate_bytes(kind, n, d, nl, sizes[-1])
            raise ValueError(f"mine.memory_budget={config.memory_budget} is too small for {n:,} vectors of "
                             f"dimension {d}: the smallest index (ivf_pq) needs about {need / 2**30:.2f} GiB")
        m = (fits or sizes)[0]
        return IndexChoice(kind, nl, m, estimate_bytes(kind, n, d, nl, m))
    nl = default_nlist(n, kind, config.nlist) if kind.startswith("ivf") else 0
    return IndexChoice(kind, nl, 0, estimate_bytes(kind, n, d, nl, 0, config.hnsw_m))


def budget_shares(dims: dict[str, int], budget: int) -> dict[str, int]:
    """The memory budget split between views in proportion to their dimensions."""
    total = sum(dims.values()) or 1
    return {v: budget * d // total for v, d in dims.items()}


class MineIndex:
    """One view's search: the saved FAISS index (re-ranking inside it), or exact search when flat."""

    def __init__(self, info: dict[str, Any], vectors: Vectors, index: faiss.Index | None = None,
                 device: str = "auto") -> None:
        self.info, self.vectors, self.index, self.device = info, vectors, index, device
        self.set_param(info.get("nprobe") or info.get("ef_search") or 0)

    @property
    def kind(self) -> str:
        return self.info["kind"]

    def set_param(self, value: int) -> None:
        if self.index is None or not value:
            return
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = int(value)
        else:
            faiss.extract_index_ivf(self.index).nprobe = int(value)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search in query blocks: fast-scan IVF builds look-up tables for all queries at
        once (nq * nprobe * m * 16 floats), gigabytes for a 50k-query shard."""
        parts = [self.index.search(q[i : i + SEARCH_BLOCK], k) for i in range(0, len(q), SEARCH_BLOCK)]
        if not parts:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) float32 -> scores (Q, k) exact inner products, rows (Q, k) (-1 where none)."""
        q = np.ascontiguousarray(q, dtype=np.float32)
        if self.index is None:
            return exact_knn(q, self.vectors, k, self.device)
        s, r = self._search(q, min(k, self.index.ntotal))  # IndexRefine re-ranks inside FAISS
        if r.shape[1] < k:
            s = np.pad(s, ((0, 0), (0, k - r.shape[1])), constant_values=-np.inf)
            r = np.pad(r, ((0, 0), (0, k - r.shape[1])), constant_values=-1)
        return s, r


def train_and_add(vectors: Vectors, choice: IndexChoice, config: MineConfig) -> faiss.Index:
    """Train on a seeded sample of `train_size` rows, then add every row block by block."""
    n, d = vectors.shape
    index = faiss.index_factory(d, choice.factory(config.hnsw_m), faiss.METRIC_INNER_PRODUCT)
    if choice.kind in REFINED:  # exact re-ranking over float16 codes, inside FAISS
        fp16 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexRefine(index, fp16)  # the Python wrapper keeps both parts alive
        index.k_factor = float(config.refine_factor)
    if choice.kind.startswith("ivf"):
        faiss.extract_index_ivf(index).cp.seed = config.seed
        sample = np.sort(np.random.default_rng(config.seed).choice(n, size=min(n, config.train_size), replace=False))
        index.train(vectors[sample])
    for _, block in vectors.blocks(ADD_BLOCK):
        index.add(block)
    return index


def tune(search: MineIndex, config: MineConfig, q: np.ndarray, exact: np.ndarray) -> tuple[int, float]:
    """The smallest nprobe / efSearch reaching target_recall on the sample, and its recall."""
    k = exact.shape[1]
    fixed = config.nprobe if search.kind != "hnsw" else config.ef_search
    if search.kind == "hnsw":
        steps = [fixed] if config.nprobe is not None else [16, 32, 64, 128, 256, 512, 1024]
    else:
        nlist = search.info["nlist"]
        steps = [min(fixed, nlist)] if fixed else sorted({min(2**i, nlist) for i in range(0, 13)})
    recall = 0.0
    for value in steps:
        search.set_param(value)
        recall = recall_at_k(search.search(q, k)[1], exact)
        if recall >= config.target_recall:
            break
    return int(value), recall


def index_hash(config: MineConfig, upstream: str) -> str:
    keys = ("k", "index", "memory_budget", "approx_threshold", "nlist", "nprobe", "target_recall",
            "recall_sample", "refine_factor", "train_size", "hnsw_m", "ef_search", "seed")
    payload = json.dumps([{k: getattr(config, k) for k in keys}, upstream, INDEX_FORMAT], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_view(vectors: Vectors, choice: IndexChoice, config: MineConfig, path: Path) -> dict[str, Any]:
    """Build, tune and save one view's index; returns its manifest entry."""
    n = len(vectors)
    k = config.k + 1  # the query itself comes back too
    info: dict[str, Any] = {**asdict(choice), "factory": choice.factory(config.hnsw_m), "vectors": n,
                            "dim": vectors.dim, "refine_factor": config.refine_factor if choice.kind in REFINED else 1}
    t0 = time.perf_counter()
    index = None
    if choice.kind != "flat":
        index = train_and_add(vectors, choice, config)
    info["build_s"] = round(time.perf_counter() - t0, 2)
    search = MineIndex(info, vectors, index, config.device)
    sample = np.sort(np.random.default_rng(config.seed + 1).choice(n, size=min(n, config.recall_sample), replace=False))
    q = vectors[sample]
    if index is None:
        info["expected_recall"] = 1.0
    else:
        exact = exact_knn(q, vectors, k, config.device)[1]
        value, recall = tune(search, config, q, exact)
        info["ef_search" if choice.kind == "hnsw" else "nprobe"] = value
        info["expected_recall"] = round(recall, 4)
        parts = {"file": (path, index)}
        if choice.kind in REFINED:  # two files: each is memory-mapped its own way when read
            base = faiss.downcast_index(index.base_index)
            parts = {"file": (path, base), "refine_file": (path.with_suffix(".fp16.faiss"), index.refine_index)}
        for key, (p, part) in parts.items():
            tmp = p.with_name(f".{p.name}.tmp")
            faiss.write_index(part, str(tmp))
            os.replace(tmp, p)
            info[key] = p.name
        info["file_bytes"] = sum(p.stat().st_size for p, _ in parts.values())
    info["recall_queries"] = len(sample)
    return info


def ensure_index(root: Path, vectors: dict[str, Vectors], config: MineConfig, upstream: str) -> dict[str, Any]:
    """Build the `mine_index` artifact unless a complete one for this config and input exists
    (views already built by an interrupted run are kept). Returns its manifest."""
    art = Artifact(Path(root) / INDEX_ARTIFACT, index_hash(config, upstream), {"embeddings": upstream})
    art.begin(overwrite=True)  # a different config or input: rebuild
    if art.is_complete():
        return art.manifest()
    budget = parse_bytes(config.memory_budget)
    n = len(next(iter(vectors.values())))
    shares = budget_shares({v: x.dim for v, x in vectors.items()}, budget)
    for i, (v, x) in enumerate(vectors.items()):
        if not art.is_done(i):
            info = build_view(x, choose_index(n, x.dim, config, shares[v]), config, art.path / f"{v}.faiss")
            files = [info[f] for f in ("file", "refine_file") if f in info]
            art.mark_done(i, n, files, view=v, **info)
    views = {art.marker(i)["view"]: art.marker(i) for i in range(len(vectors))}
    return art.write_manifest(kind="mine_index", num_shards=len(vectors), extra={
        "indexes": views, "memory_budget": config.memory_budget, "budget_bytes": budget,
        "index_bytes": int(sum(m["bytes"] for m in views.values()))})


def read_saved(folder: Path, info: dict[str, Any], mmap: bool = True) -> faiss.Index:
    """One view's saved index, memory-mapped: IVF inverted lists with IO_FLAG_MMAP (fast-scan PQ
    lists are read: they are small), flat codes with IO_FLAG_MMAP_IFC (HNSW's vectors, the float16
    re-ranking copy). FAISS cannot do both in one file, hence the refined kinds' two files,
    joined here into the `IndexRefine` that was saved."""
    kind = info["kind"]
    flags = (faiss.IO_FLAG_MMAP_IFC if kind == "hnsw" else faiss.IO_FLAG_MMAP) if mmap else 0
    index = faiss.read_index(str(Path(folder) / info["file"]), flags)
    if kind not in REFINED:
        return index
    refine = faiss.read_index(str(Path(folder) / info["refine_file"]), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    joined = faiss.IndexRefine(index, refine)  # the Python wrapper keeps both parts alive
    joined.k_factor = float(info["refine_factor"])
    return joined


def open_index(root: Path, vectors: dict[str, Vectors], device: str = "auto", mmap: bool = True
               ) -> dict[str, MineIndex]:
    """Every view's saved index, memory-mapped, ready to search."""
    art = open_complete(Path(root) / INDEX_ARTIFACT)
    out = {}
    for v, info in art.manifest()["indexes"].items():
        if v not in vectors:
            continue
        index = read_saved(art.path, info, mmap) if info.get("file") else None
        out[v] = MineIndex(info, vectors[v], index, device)
    return out
