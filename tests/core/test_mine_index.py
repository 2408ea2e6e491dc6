"""Mining indexes: memory-mapped vectors, budget choice, saved-index round trip, exact paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from megapairs.artifacts import Artifact, write_npy, write_table
from megapairs.embed.store import Vectors, load_embeddings, open_embeddings, open_views
from megapairs.mine.config import MineConfig, parse_bytes
from megapairs.mine.exact import faiss_knn, torch_knn
from megapairs.mine.index import INDEX_ARTIFACT, choose_index, ensure_index, open_index
from megapairs.mine.stage import MineStage
from megapairs.stages import run_stage

DIMS = {"image": 32, "caption": 16}


def _vectors(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, d))
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def _embeddings(root: Path, n: int = 1500, shard: int = 400) -> dict[str, np.ndarray]:
    art = Artifact(root / "embeddings", config_hash=f"test-{n}")
    art.begin()
    mats = {v: _vectors(n, d, j) for j, (v, d) in enumerate(DIMS.items())}
    for s, i in enumerate(range(0, n, shard)):
        write_table(art.shard_path(s), pa.table({"id": [f"im{r:05d}" for r in range(i, min(n, i + shard))]}))
        for v in DIMS:
            write_npy(art.path / v / f"part-{s:05d}.npy", mats[v][i : i + shard])
        art.mark_done(s, min(shard, n - i), [])
    art.write_manifest(kind="embeddings", num_shards=s + 1, extra={
        "views": {v: {"spec": "test", "dim": d, "modality": "image"} for v, d in DIMS.items()}})
    return mats


def test_vectors_are_memory_mapped_float16_and_index_like_an_array(tmp_path):
    mats = _embeddings(tmp_path, n=1000, shard=300)
    ids, views = open_embeddings(tmp_path / "embeddings")
    x = views["image"]
    assert isinstance(x.parts[0], np.memmap) and x.parts[0].dtype == np.float16 and len(x.parts) == 4
    full = mats["image"].astype(np.float32)
    rows = np.array([999, 0, 299, 300, 301, 650, 650])
    assert np.array_equal(x[rows], full[rows]) and x[rows].dtype == np.float32
    assert np.array_equal(x[250:620], full[250:620]) and len(x) == 1000 and x.shape == (1000, 32)
    assert np.array_equal(np.concatenate([b for _, b in x.blocks(128)]), full)
    assert ids[301] == "im00301" and load_embeddings(tmp_path / "embeddings")[0] == list(ids)


def test_torch_and_faiss_blockwise_exact_search_match_brute_force():
    x = Vectors([_vectors(700, 24, 0), _vectors(333, 24, 1)], 24)
    q = x[np.arange(0, 1033, 7)]
    full = x[0 : len(x)]
    brute = np.argsort(-(q @ full.T), axis=1, kind="stable")[:, :9]
    fs, fr = faiss_knn(q, x, 9, db_block=256)  # blocks smaller than the data: merged results
    ts, tr = torch_knn(q, x, 9, device="cpu", db_block=256, q_block=50)
    assert np.array_equal(fr, brute) and np.array_equal(tr, brute)
    np.testing.assert_allclose(fs, ts, atol=1e-5)
    small = Vectors([_vectors(5, 24, 2)], 24)  # k larger than the database: -1 padding
    assert (faiss_knn(q[:3], small, 8)[1][:, 5:] == -1).all() and (torch_knn(q[:3], small, 8)[1][:, 5:] == -1).all()


def test_budget_selection():
    cfg = MineConfig(approx_threshold=10_000)
    n, d = 1_000_000, 1024
    assert choose_index(5_000, d, cfg, 0).kind == "flat"  # below the threshold: exact
    assert choose_index(n, d, cfg, 8 * 2**30).kind == "ivf_flat"  # 4.1 GB of float32 codes fit
    assert choose_index(n, d, cfg, 2 * 2**30).kind == "ivf_sq8"  # 1 GB of 8-bit codes
    pq = choose_index(n, d, cfg, 300 * 2**20)
    assert pq.kind == "ivf_pq" and pq.pq_m == 512 and pq.bytes <= 300 * 2**20
    assert choose_index(n, d, cfg, 100 * 2**20).pq_m == 128  # fewer sub-quantizers to fit
    with pytest.raises(ValueError, match="memory_budget=8GiB is too small"):
        choose_index(n, d, cfg, 10 * 2**20)
    assert choose_index(n, d, MineConfig(index="hnsw"), 0).kind == "hnsw"  # an explicit kind wins
    assert parse_bytes("1.5GiB") == 3 * 2**29 and parse_bytes("500MB") == 500 * 10**6


def test_saved_index_round_trip_and_mmap_load(tmp_path):
    _embeddings(tmp_path)
    cfg = MineConfig(k=5, index="ivf_pq", nlist=16, train_size=1000, target_recall=0.9, refine_factor=4)
    vectors = open_views(tmp_path / "embeddings")
    manifest = ensure_index(tmp_path, vectors, cfg, "test-1500")
    info = manifest["indexes"]["image"]
    assert info["kind"] == "ivf_pq" and info["expected_recall"] >= 0.9 and 1 <= info["nprobe"] <= 16
    path = tmp_path / INDEX_ARTIFACT / info["file"]
    mtime = path.stat().st_mtime_ns
    mapped = open_index(tmp_path, vectors)
    in_memory = open_index(tmp_path, vectors, mmap=False)
    q = vectors["image"][np.arange(0, 1500, 11)]
    a, b = mapped["image"].search(q, 6), in_memory["image"].search(q, 6)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    assert ensure_index(tmp_path, vectors, cfg, "test-1500") == manifest and path.stat().st_mtime_ns == mtime
    ensure_index(tmp_path, vectors, MineConfig(k=5, index="ivf_sq8", nlist=16), "test-1500")  # new config
    sq8 = open_index(tmp_path, vectors)["image"]
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(sq8.index).invlists)
    assert sq8.kind == "ivf_sq8" and type(lists).__name__ == "OnDiskInvertedLists"  # read via mmap


def test_refined_kinds_rerank_inside_faiss_over_float16_codes(tmp_path):
    mats = _embeddings(tmp_path)
    vectors = open_views(tmp_path / "embeddings")
    ensure_index(tmp_path, vectors, MineConfig(k=5, index="ivf_pq", nlist=8, refine_factor=3), "test-1500")
    index = open_index(tmp_path, vectors)["image"]
    assert type(index.index).__name__ == "IndexRefine" and index.index.k_factor == 3
    refine = faiss.downcast_index(index.index.refine_index)
    assert type(refine).__name__ == "IndexScalarQuantizer" and refine.sq.qtype == faiss.ScalarQuantizer.QT_fp16
    assert refine.ntotal == 1500 and (tmp_path / INDEX_ARTIFACT / "image.fp16.faiss").is_file()
    q = vectors["image"][np.arange(0, 1500, 50)]
    s, r = index.index.search(q, 6)  # bare FAISS returns the exact scores of the float16 vectors
    full = mats["image"].astype(np.float32)
    np.testing.assert_allclose(s, np.einsum("qd,qkd->qk", q, full[r]), atol=1e-5)
    assert (r[:, 0] == np.arange(0, 1500, 50)).all()


def _pairs(root: Path, **kw) -> tuple[list[dict], dict]:
    opts = dict(k=5, bands={"image": [0.3, 0.97], "caption": [0.3, 0.97]}, query_shard_size=500, approx_threshold=100)
    cfg = MineConfig(**{**opts, **kw})
    manifest = run_stage(MineStage(root, cfg), overwrite=True)
    rows = Artifact(root / "pairs").read_all().to_pylist()
    return rows, manifest


def test_flat_and_ivf_pq_with_refine_give_the_same_pairs_at_recall_1(tmp_path):
    _embeddings(tmp_path)
    flat, mf = _pairs(tmp_path, index="flat")
    pq, mp = _pairs(tmp_path, index="ivf_pq", nlist=8, target_recall=1.0, recall_sample=1500, refine_factor=16)
    assert mf["index"]["image"]["kind"] == "flat" and mp["index"]["image"]["kind"] == "ivf_pq"
    assert all(mp["index"][v]["expected_recall"] == 1.0 for v in DIMS)
    assert len(flat) > 500
    key = lambda r: (r["query_id"], r["target_id"])  # noqa: E731
    assert [key(r) for r in flat] == [key(r) for r in pq]
    for a, b in zip(flat, pq):
        assert a["found_by"] == b["found_by"] and a["hard_negatives"] == b["hard_negatives"]
        assert a["score_image"] == pytest.approx(b["score_image"], abs=1e-5)


def test_quantile_bands_come_from_the_saved_index(tmp_path):
    _embeddings(tmp_path)
    _, manifest = _pairs(tmp_path, index="ivf_sq8", nlist=8, band_units="quantile",
                         bands={"image": [0.2, 0.8], "caption": [0.2, 0.8]})
    lo, hi = manifest["bands"]["image"]
    assert 0 < lo < hi < 1 and manifest["index"]["image"]["kind"] == "ivf_sq8"


def test_hnsw_and_ivf_flat_are_saved_and_reopened(tmp_path):
    _embeddings(tmp_path, n=800)
    vectors = open_views(tmp_path / "embeddings")
    for kind in ("hnsw", "ivf_flat"):
        cfg = MineConfig(k=5, index=kind, nlist=8, hnsw_m=16, target_recall=0.9)
        manifest = ensure_index(tmp_path, vectors, cfg, "test-800")
        assert manifest["indexes"]["image"]["expected_recall"] >= 0.9
        index = open_index(tmp_path, vectors)["image"]
        s, r = index.search(vectors["image"][np.arange(20)], 6)
        assert index.kind == kind and (r[:, 0] == np.arange(20)).all()  # each vector finds itself first


@pytest.mark.ray
def test_refined_index_pairs_are_byte_identical_on_ray_and_on_resume(tmp_path):
    pytest.importorskip("ray")
    from megapairs.executors.ray_executor import RayExecutor

    _embeddings(tmp_path)
    shards = lambda: {p.name: p.read_bytes() for p in sorted((tmp_path / "pairs").glob("part-*.parquet"))}  # noqa: E731
    rows, _ = _pairs(tmp_path, index="ivf_pq", nlist=8, refine_factor=3)
    local = shards()
    assert len(local) == 3 and len(rows) > 500
    art = Artifact(tmp_path / "pairs")
    art.manifest_path.unlink()
    (art.path / "part-00001.parquet").unlink()  # an interrupted run: one shard and its marker gone
    next((art.path / ".megapairs" / "done").glob("part-00001*")).unlink()
    cfg = MineConfig(k=5, bands={"image": [0.3, 0.97], "caption": [0.3, 0.97]}, query_shard_size=500,
                     approx_threshold=100, index="ivf_pq", nlist=8, refine_factor=3)
    run_stage(MineStage(tmp_path, cfg))  # resumes: rewrites the missing shard only
    assert shards() == local
    run_stage(MineStage(tmp_path, cfg), RayExecutor(num_actors=2), overwrite=True)
    import ray

    ray.shutdown()
    assert shards() == local


def test_pairs_do_not_depend_on_shard_pipeline_or_selection_block_sizes(tmp_path, monkeypatch):
    # each query's pairs depend on its own neighbours only: the shards, the pipeline's steps (one
    # searched while the previous one is selected) and the selection's blocks must not show
    from megapairs.mine import select, stage

    _embeddings(tmp_path)
    opts = dict(index="ivf_pq", nlist=8, refine_factor=3, near_duplicate={"image": 0.9})
    base, base_manifest = _pairs(tmp_path, **opts)
    assert len(base) > 500 and base_manifest["dropped"].get("near_duplicate_target", 0) > 0
    for shard, step, block in ((137, 50, 16), (1500, 7, 1000), (400, 4096, 3)):
        monkeypatch.setattr(stage, "PIPELINE_BLOCK", step)
        monkeypatch.setattr(select, "SELECT_BLOCK", block)
        shutil.rmtree(tmp_path / "pairs")  # query_shard_size is not hashed: a rerun would resume
        rows, manifest = _pairs(tmp_path, query_shard_size=shard, **opts)
        assert rows == base, (shard, step, block)
        assert manifest["dropped"] == base_manifest["dropped"]
        assert manifest["score_histograms"] == base_manifest["score_histograms"]


def test_resume_with_another_query_shard_size_keeps_the_written_shards_ranges(tmp_path):
    # query_shard_size is not hashed, so a resumed run may name another; it must keep the row
    # ranges of the shards already written (it wrote some queries twice and skipped others)
    import json

    from megapairs.artifacts import ArtifactError

    _embeddings(tmp_path)
    opts = dict(index="ivf_pq", nlist=8, refine_factor=3)
    whole, whole_manifest = _pairs(tmp_path, **opts)  # 3 shards of 500 queries
    art = Artifact(tmp_path / "pairs")

    def interrupt() -> None:  # shard 1 and its marker gone, no manifest
        art.manifest_path.unlink(missing_ok=True)
        (art.path / "part-00001.parquet").unlink()
        art.marker_path(1).unlink()

    interrupt()
    rows, manifest = _pairs(tmp_path, query_shard_size=137, **opts)
    assert rows == whole and manifest["num_shards"] == 3 and manifest["queries"] == 1500
    interrupt()
    for i in (0, 2):  # markers of older code did not record the size: a mismatch is refused
        m = art.marker(i)
        del m["shard_size"]
        art.marker_path(i).write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="query_shard_size"):
        _pairs(tmp_path, query_shard_size=137, **opts)
    rows, _ = _pairs(tmp_path, query_shard_size=500, **opts)
    assert rows == whole
