"""A searchable gallery: image embeddings from one retriever, an id/path table and a FAISS index.

Folder layout (everything written atomically; `index.json` last, so its presence means "finished")::

    <index>/
      embeddings.npy    # (count, dim) float16, L2-normalised, row-aligned with items.parquet
      items.parquet     # row, id, path, src, caption
      skipped.parquet   # gallery items that could not be read: path, status, reason
      faiss.index       # only for trained indexes (IVF ...); a flat index is rebuilt at load
      index.json        # retriever spec, preprocess_id, dim, count, faiss type, build stats
      _shards/          # while building: per-shard embeddings + completion markers (resumable)

Building is resumable: shards whose marker exists are not recomputed, and a folder started by a
different retriever or gallery is refused instead of mixed. Querying is refused when the
retriever's `preprocess_id` differs from the one that built the index (its vectors would not be
comparable).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from megapairs import __version__
from megapairs.artifacts import Artifact, atomic_write_bytes, atomic_write_json, read_json, write_npy, write_table
from megapairs.errors import UserError
from megapairs.progress import Progress
from megapairs.search.gallery import Gallery, GalleryItem, chunks, content_id, list_gallery, read_item, status_of

INDEX_JSON = "index.json"
EMBEDDINGS = "embeddings.npy"
ITEMS = "items.parquet"
SKIPPED = "skipped.parquet"
FAISS_FILE = "faiss.index"
SHARDS = "_shards"
FORMAT = "megapairs-gallery-index"
FORMAT_VERSION = 1
OUR_FILES = (INDEX_JSON, EMBEDDINGS, ITEMS, SKIPPED, FAISS_FILE)

SHARD_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("src", pa.string()),
                          ("caption", pa.string()), ("status", pa.string()), ("reason", pa.string()),
                          ("emb_row", pa.int64())])


class SearchIndexError(UserError, RuntimeError):
    """An index folder is missing, unfinished, or belongs to another retriever or gallery."""


class RetrieverMismatchError(SearchIndexError):
    """The retriever given for querying is not the one whose embeddings the index holds."""


class Hit(NamedTuple):
    """One result: the gallery item's path and id, its score (inner product of unit vectors) and
    1-based rank. A named tuple: immutable and cheap to make (search makes k per query)."""

    path: str
    id: str
    score: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


@dataclass(frozen=True)
class IndexOptions:
    """FAISS choice. `kind`: "auto" (flat below `ivf_threshold` vectors, IVF above), "flat", "ivf",
    or any FAISS factory string (e.g. "IVF4096,PQ64", "HNSW32"), always with inner product."""

    kind: str = "auto"
    ivf_threshold: int = 1_000_000
    nlist: int | None = None  # IVF lists; default about 4 * sqrt(count)
    nprobe: int = 32
    train_size: int | None = None  # vectors sampled to train; default min(count, 100 * nlist)

    def factory(self, count: int) -> str:
        kind = self.kind.strip()
        if kind.lower() == "auto":
            kind = "ivf" if count >= self.ivf_threshold else "flat"
        if kind.lower() == "flat":
            return "Flat"
        if kind.lower() == "ivf":
            return f"IVF{self.lists(count)},Flat"
        return kind

    def lists(self, count: int) -> int:
        if self.nlist:
            return self.nlist
        return int(max(1, min(4 * math.sqrt(count), count // 39 or 1)))


class GalleryIndex:
    """Load with `GalleryIndex.load(folder, retriever)`; build with `GalleryIndex.build(...)`."""

    def __init__(self, folder: Path, meta: dict[str, Any], embeddings: np.ndarray, items: pa.Table,
                 index: faiss.Index, retriever: Any = None) -> None:
        self.folder = folder
        self.meta = meta
        self.embeddings = embeddings  # (count, dim) float16, possibly memory-mapped
        self.ids: list[str] = items.column("id").to_pylist()
        self.paths: list[str] = items.column("path").to_pylist()
        self.srcs: list[str] = items.column("src").to_pylist()
        self.captions: list[str | None] = items.column("caption").to_pylist()
        self.row_of: dict[str, int] = {i: r for r, i in enumerate(self.ids)}
        self.faiss = index
        self._retriever = None
        self.retriever = retriever

    # -- identity -------------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        return self.meta["retriever"]

    @property
    def preprocess_id(self) -> str:
        return self.meta["preprocess_id"]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def retriever(self):
        return self._retriever

    @retriever.setter
    def retriever(self, retriever) -> None:
        if retriever is not None:
            check_retriever(self.meta, retriever, self.folder)
        self._retriever = retriever

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, retriever: Any = None, *, nprobe: int | None = None,
             mmap: bool = False) -> "GalleryIndex":
        """Open a finished index. `retriever` may be None to search with precomputed vectors only.
        `nprobe` overrides the stored IVF setting; `mmap` leaves embeddings.npy on disk."""
        folder = Path(folder).expanduser()
        meta = read_meta(folder)
        if retriever is not None:
            check_retriever(meta, retriever, folder)
        fmeta = meta["faiss"]
        # a trained index file holds its own copy of the vectors: keep the .npy on disk then
        embeddings = np.load(folder / EMBEDDINGS, mmap_mode="r" if mmap or fmeta.get("file") else None)
        items = pq.read_table(folder / ITEMS)
        if embeddings.shape != (meta["count"], meta["dim"]) or items.num_rows != meta["count"]:
            raise SearchIndexError(
                f"{folder} is inconsistent: index.json says {meta['count']} x {meta['dim']}, "
                f"{EMBEDDINGS} is {embeddings.shape}, {ITEMS} has {items.num_rows} rows; rebuild it"
            )
        if fmeta.get("file"):
            index = faiss.read_index(str(folder / fmeta["file"]))
        else:
            index = _flat_index(embeddings)
        _set_nprobe(index, nprobe if nprobe is not None else fmeta.get("nprobe"))
        return cls(folder, meta, embeddings, items, index, retriever)

    # -- querying -------------------------------------------------------------------------------
    def encode_query(self, images=None, text=None) -> np.ndarray:
        if self.retriever is None:
            raise SearchIndexError("this index was loaded without a retriever: pass vectors=, or load it "
                                   "with GalleryIndex.load(folder, retriever)")
        if images is None and text is None:
            raise ValueError("a query needs an image, a text instruction, or both")
        q = self.retriever.encode(images=images, text=text)
        return np.ascontiguousarray(q.detach().float().cpu().numpy(), dtype=np.float32)  # (B, D)

    def search(self, images=None, text=None, k: int = 10, *, vectors: np.ndarray | None = None,
               exclude_ids: Sequence[str] | None = None) -> list[list[Hit]]:
        """Top-k gallery items per query, best first. Queries are `images` and/or `text` (one or a
        list of each; both = composed queries), or precomputed L2-normalised `vectors` (B, D).
        `exclude_ids` drops those gallery items (e.g. the query image itself) from every list."""
        if vectors is None:
            q = self.encode_query(images, text)
        else:
            q = np.asarray(vectors, dtype=np.float32)
            if q.ndim == 1:
                q = q[None, :]
            if not q.flags.c_contiguous:
                q = np.ascontiguousarray(q)
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {q.shape[1]}, the index holds {self.dim}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        excluded = set(exclude_ids or ())
        kk = min(k + len(excluded), len(self.ids))
        if kk == 0:
            return [[] for _ in range(q.shape[0])]
        scores, labels = self.faiss.search(q, kk)
        return [self._hits(s, lab, k, excluded) for s, lab in zip(scores.tolist(), labels.tolist())]

    def _hits(self, scores: list[float], labels: list[int], k: int, excluded: set[str]) -> list[Hit]:
        out: list[Hit] = []
        ids, paths = self.ids, self.paths
        for score, label in zip(scores, labels):
            if label < 0:  # fewer results than asked (IVF probing too few lists)
                break
            if excluded and ids[label] in excluded:
                continue
            out.append(Hit(paths[label], ids[label], score, len(out) + 1))
            if len(out) == k:
                break
        return out

    def item(self, item_id: str) -> GalleryItem | None:
        row = self.row_of.get(item_id)
        if row is None:
            return None
        return GalleryItem(self.paths[row], self.srcs[row], self.ids[row], self.captions[row])

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, gallery: str | Path | Sequence[str | Path], retriever: Any, out: str | Path, *,
              batch_size: int = 32, shard_size: int = 2048, options: IndexOptions | None = None,
              overwrite: bool = False, progress: bool = True, decode_threads: int = 1,
              ) -> "GalleryIndex":
        """Embed every gallery image with `retriever` into an index folder `out` and return it loaded.
        Interrupted builds resume from their finished shards; a finished index with the same
        retriever and gallery is returned as is. `decode_threads` read and decode the next batch
        while the current one is encoded (0: decode inline)."""
        return IndexBuilder(retriever, Path(out).expanduser(), batch_size=batch_size, shard_size=shard_size,
                            options=options or IndexOptions(), overwrite=overwrite, progress=progress,
                            decode_threads=decode_threads).run(list_gallery(gallery))

    @classmethod
    def from_vectors(cls, out: str | Path, vectors: np.ndarray, ids: Sequence[str], paths: Sequence[str], *,
                     spec: str, preprocess_id: str, options: IndexOptions | None = None,
                     captions: Sequence[str | None] | None = None, overwrite: bool = False,
                     retriever: Any = None) -> "GalleryIndex":
        """An index folder from embeddings computed elsewhere (an embed artifact, a benchmark)."""
        out = Path(out).expanduser()
        _claim(out, overwrite)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(ids) or len(ids) != len(paths):
            raise ValueError(f"vectors {vectors.shape}, {len(ids)} ids and {len(paths)} paths do not line up")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        write_npy(out / EMBEDDINGS, vectors.astype(np.float16, copy=False))
        items = pa.table({"row": pa.array(range(len(ids)), pa.int64()), "id": pa.array(list(ids), pa.string()),
                          "path": pa.array(list(paths), pa.string()), "src": pa.array(list(paths), pa.string()),
                          "caption": pa.array(list(captions) if captions else [None] * len(ids), pa.string())})
        write_table(out / ITEMS, items)
        write_table(out / SKIPPED, _empty_skipped())
        _finish(out, spec, preprocess_id, vectors.shape[1], len(ids), options or IndexOptions(),
                       {"kind": "vectors", "source": "from_vectors", "listed": len(ids), "skipped": {}}, {})
        return cls.load(out, retriever)


# -- checks ---------------------------------------------------------------------------------------
def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / INDEX_JSON
    if not path.exists():
        hint = (" A build was started there and can be resumed by running the same index command again."
                if (folder / SHARDS).exists() else "")
        raise SearchIndexError(f"{folder} is not a finished search index (no {INDEX_JSON}).{hint}")
    meta = read_json(path)
    if meta.get("format") != FORMAT:
        raise SearchIndexError(f"{path} is not a megapairs gallery index (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise SearchIndexError(f"{folder} was written by a newer megapairs (index version {meta['version']}); "
                               "upgrade megapairs to read it")
    return meta


def check_retriever(meta: dict[str, Any], retriever: Any, folder: Path | str) -> None:
    got = retriever.preprocess_id
    if got != meta["preprocess_id"]:
        raise RetrieverMismatchError(
            f"the index at {folder} was built with retriever {meta['retriever']!r} "
            f"(preprocess_id {meta['preprocess_id']!r}), but the query retriever "
            f"{getattr(retriever, 'spec', type(retriever).__name__)!r} has "
            f"preprocess_id {got!r}. Its query vectors would not be comparable with the gallery's. "
            f"Query with the model that built the index (--model {meta['retriever']}, or leave --model out), "
            "or rebuild the index with this model."
        )


# -- building, step by step -----------------------------------------------------------------------
class IndexBuilder:
    def __init__(self, retriever: Any, out: Path, *, batch_size: int, shard_size: int, options: IndexOptions,
                 overwrite: bool, progress: bool, decode_threads: int) -> None:
        if batch_size < 1 or shard_size < 1:
            raise ValueError("batch_size and shard_size must be >= 1")
        self.retriever = retriever
        self.out = out
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.options = options
        self.overwrite = overwrite
        self.progress = progress
        self.decode_threads = max(0, decode_threads)  # 0: decode inline, no prefetch
        key = getattr(retriever, "image_feature_key", None)
        self.uses_feature_cache = bool(getattr(retriever, "feature_cache_dir", None)) and callable(key) and key() is not None

    def identity(self, gallery: Gallery) -> dict[str, Any]:
        listing = hashlib.sha256("\n".join(it.src for it in gallery.items).encode()).hexdigest()[:16]
        return {"retriever": self.retriever.spec, "preprocess_id": self.retriever.preprocess_id,
                "gallery_listing": listing, "shard_size": self.shard_size}

    def run(self, gallery: Gallery) -> GalleryIndex:
        if not gallery.items:
            raise ValueError(f"gallery {gallery.source} holds no images")
        ident = self.identity(gallery)
        config_hash = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        if (self.out / INDEX_JSON).exists():
            meta = read_json(self.out / INDEX_JSON)
            if meta.get("build", {}).get("config_hash") == config_hash and not self.overwrite:
                return GalleryIndex.load(self.out, self.retriever)
            _claim(self.out, self.overwrite)
        art = Artifact(self.out / SHARDS, config_hash, {})
        try:
            art.begin(overwrite=self.overwrite)
        except Exception as e:
            raise SearchIndexError(
                f"{self.out} holds an unfinished build for another retriever, gallery or shard size. "
                "Use another --out folder, or --overwrite to discard it."
            ) from e
        tasks = list(enumerate(chunks(gallery.items, self.shard_size)))
        done = set(art.done_shards())
        bar = Progress(len(gallery.items), f"index {self.out.name}", disable=self.progress is False)
        bar.update(sum(len(items) for i, items in tasks if i in done))
        pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode") if self.decode_threads else None
        try:
            for i, items in tasks:
                if i not in done:
                    self.write_shard(art, i, items, pool, bar)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        timers = bar.close()
        self.consolidate(art, len(tasks), gallery, config_hash, timers)
        shutil.rmtree(art.path, ignore_errors=True)
        return GalleryIndex.load(self.out, self.retriever)

    def write_shard(self, art: Artifact, shard: int, items: Sequence[GalleryItem], pool: ThreadPoolExecutor | None,
                    bar: Progress) -> None:
        rows: list[dict[str, Any]] = []
        vectors: list[np.ndarray] = []
        batches = list(chunks(items, self.batch_size))
        pending = [pool.submit(_read_all, batches[0])] if batches and pool else []
        for b in range(len(batches)):
            if pool is None:  # decode inline
                with bar.timer("decode"):
                    decoded = _read_all(batches[b])
            else:
                if b + 1 < len(batches):  # decode the next batch while this one is encoded
                    pending.append(pool.submit(_read_all, batches[b + 1]))
                with bar.timer("decode_wait"):
                    decoded = pending.pop(0).result()
            images, srcs = [], []
            for item, (data_id, image, error) in zip(batches[b], decoded):
                row = {"id": item.id or data_id, "path": item.path, "src": item.src, "caption": item.caption,
                       "status": "ok", "reason": None, "emb_row": -1}
                if error is not None:
                    row.update(status=status_of(error), reason=str(error))
                else:
                    row["emb_row"] = sum(len(v) for v in vectors) + len(images)
                    images.append(image)
                    srcs.append(item.src)
                rows.append(row)
            if images:
                # Files go by path where the retriever keeps a feature cache: images embedded before
                # (by training, evaluation or another index) skip the image tower.
                by_path = self.uses_feature_cache and all(_plain_file(s) for s in srcs)
                with bar.timer("encode"):
                    emb = self.retriever.encode(images=srcs if by_path else images)
                vectors.append(emb.detach().float().cpu().numpy().astype(np.float16))  # (b, D)
            bar.update(len(batches[b]))
        with bar.timer("write"):
            dim = vectors[0].shape[1] if vectors else 0
            emb = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float16)
            write_npy(art.shard_path(shard, ".npy"), emb)
            write_table(art.shard_path(shard), pa.Table.from_pylist(rows, schema=SHARD_SCHEMA))
            art.mark_done(shard, len(rows), [art.shard_path(shard, ".npy").name, art.shard_path(shard).name],
                          ok=len(emb), dim=int(dim))

    def consolidate(self, art: Artifact, num_shards: int, gallery: Gallery, config_hash: str,
                    timers: dict[str, float]) -> dict[str, Any]:
        """Shards -> embeddings.npy + items.parquet (duplicates by id dropped), then the FAISS index."""
        keep: list[tuple[int, np.ndarray]] = []  # (shard, emb rows to keep)
        seen: set[str] = set()
        item_cols: dict[str, list] = {"id": [], "path": [], "src": [], "caption": []}
        skipped: dict[str, list] = {"path": [], "status": [], "reason": []}
        dim = 0
        for s in range(num_shards):
            dim = dim or int(art.marker(s).get("dim") or 0)
            t = art.read_shard(s).to_pylist()
            rows = []
            for r in t:
                if r["status"] == "ok" and r["id"] in seen:
                    r = {**r, "status": "duplicate", "reason": f"same bytes as an earlier item ({r['id']})"}
                if r["status"] != "ok":
                    for c in skipped:
                        skipped[c].append(r[c])
                    continue
                seen.add(r["id"])
                rows.append(r["emb_row"])
                for c in item_cols:
                    item_cols[c].append(r[c])
            keep.append((s, np.asarray(rows, np.int64)))
        count = len(item_cols["id"])
        if count == 0:
            reasons = sorted(set(skipped["status"]))
            raise SearchIndexError(f"no gallery image could be read ({', '.join(reasons)}); nothing to index. "
                                   f"First problem: {skipped['path'][0]}: {skipped['reason'][0]}")
        tmp = self.out / f".{EMBEDDINGS}.tmp"
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(count, dim))
        at = 0
        for s, rows in keep:
            if len(rows):
                mm[at : at + len(rows)] = np.load(art.shard_path(s, ".npy"), mmap_mode="r")[rows]
                at += len(rows)
        mm.flush()
        del mm
        tmp.replace(self.out / EMBEDDINGS)
        write_table(self.out / ITEMS, pa.table({"row": pa.array(range(count), pa.int64()),
                                                **{c: pa.array(v, pa.string()) for c, v in item_cols.items()}}))
        write_table(self.out / SKIPPED, pa.table({c: pa.array(v, pa.string()) for c, v in skipped.items()}))
        counts: dict[str, int] = {}
        for st in skipped["status"]:
            counts[st] = counts.get(st, 0) + 1
        wall = timers.get("wall_s") or 0.0
        build = {"config_hash": config_hash, "batch_size": self.batch_size, "shard_size": self.shard_size,
                 "num_shards": num_shards, "timers": timers,
                 "images_per_s": round(len(gallery.items) / wall, 2) if wall else None}
        return _finish(self.out, self.retriever.spec, self.retriever.preprocess_id, dim, count, self.options,
                       {"kind": gallery.kind, "source": gallery.source, "listed": len(gallery.items),
                        "skipped": counts}, build)


def _read_all(items: Sequence[GalleryItem]) -> list[tuple[str | None, Any, Exception | None]]:
    out = []
    for item in items:
        try:
            data, image = read_item(item.src)
            out.append((content_id(data), image, None))
        except Exception as e:  # unreadable items become rows with a status, not a crash
            out.append((item.id or content_id(item.src.encode()), None, e))
    return out


def _plain_file(src: str) -> bool:
    """A raster image file on disk (not a tar member, a table cell or an SVG that needs rendering)."""
    from megapairs.corpus.images import SVG_EXT

    return not src.startswith(("tar:", "parquet:")) and Path(src).suffix.lower() not in SVG_EXT


def _empty_skipped() -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in ("path", "status", "reason")})


def _claim(out: Path, overwrite: bool) -> None:
    """Make `out` ready for a new index: refuse to replace a finished one unless told to; remove only
    the files an index consists of (never anything else a user keeps in that folder)."""
    if (out / INDEX_JSON).exists() and not overwrite:
        raise SearchIndexError(f"{out} already holds an index for another retriever or gallery; "
                               "use another --out folder, or --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_JSON).unlink(missing_ok=True)  # first: the folder stops counting as finished
    for name in OUR_FILES:
        (out / name).unlink(missing_ok=True)
    if overwrite:
        shutil.rmtree(out / SHARDS, ignore_errors=True)


def _finish(out: Path, spec: str, preprocess_id: str, dim: int, count: int, options: IndexOptions,
            gallery: dict[str, Any], build: dict[str, Any]) -> dict[str, Any]:
    factory = options.factory(count)
    fmeta: dict[str, Any] = {"factory": factory, "metric": "inner_product", "file": None, "nprobe": None}
    if factory != "Flat":
        t0 = time.perf_counter()
        emb = np.load(out / EMBEDDINGS, mmap_mode="r")
        index = _trained_index(emb, factory, options)
        atomic_write_bytes(out / FAISS_FILE, faiss.serialize_index(index).tobytes())
        fmeta.update(file=FAISS_FILE, nprobe=options.nprobe if "IVF" in factory else None,
                     build_s=round(time.perf_counter() - t0, 3))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "retriever": spec, "preprocess_id": preprocess_id,
            "dim": int(dim), "count": int(count), "dtype": "float16", "faiss": fmeta, "gallery": gallery,
            "build": build, "files": {"embeddings": EMBEDDINGS, "items": ITEMS, "skipped": SKIPPED},
            "code_version": __version__, "created": time.time()}
    atomic_write_json(out / INDEX_JSON, meta)
    return meta


def _flat_index(embeddings: np.ndarray, chunk: int = 65536) -> faiss.Index:
    index = faiss.IndexFlatIP(int(embeddings.shape[1]))
    for i in range(0, len(embeddings), chunk):
        index.add(np.ascontiguousarray(embeddings[i : i + chunk], dtype=np.float32))
    return index


def _trained_index(embeddings: np.ndarray, factory: str, options: IndexOptions, chunk: int = 65536) -> faiss.Index:
    count, dim = embeddings.shape
    index = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        nlist = getattr(faiss.extract_index_ivf(index), "nlist", 1) if "IVF" in factory else 1
        n = min(count, options.train_size or max(100 * nlist, 10_000))
        rows = np.sort(np.random.default_rng(0).choice(count, size=n, replace=False))
        # One FAISS call with no progress of its own: say what runs and how long it took.
        print(f"faiss {factory}: training on {n} vectors ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        index.train(np.ascontiguousarray(embeddings[rows], dtype=np.float32))
        print(f"faiss {factory}: trained in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    bar = Progress(count, f"faiss {factory} add", unit="vec", disable=count <= chunk)
    for i in range(0, count, chunk):
        index.add(np.ascontiguousarray(embeddings[i : i + chunk], dtype=np.float32))
        bar.update(min(chunk, count - i))
    bar.close()
    return index


def _set_nprobe(index: faiss.Index, nprobe: int | None) -> None:
    if not nprobe:
        return
    try:
        faiss.extract_index_ivf(index).nprobe = int(nprobe)
    except (RuntimeError, AttributeError):  # not an IVF index
        pass
