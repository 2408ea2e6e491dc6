"""GalleryIndex: build/load round trip, exactness against brute force, refusals, resume, IVF, corpus input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from megapairs.search import GalleryIndex, IndexOptions, RetrieverMismatchError, SearchIndexError
from megapairs.search.index import IndexBuilder
from tests.search.searchtoy import ToyClipRetriever


def brute_force(emb: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q.astype(np.float32) @ emb.astype(np.float32).T  # (B, N)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def test_round_trip(built_index, gallery_dir, toy):
    idx = GalleryIndex.load(built_index, toy)
    meta = json.loads((built_index / "index.json").read_text())
    assert meta["retriever"] == toy.spec and meta["preprocess_id"] == toy.preprocess_id
    assert meta["count"] == 12 and meta["dim"] == toy.dim and meta["faiss"]["factory"] == "Flat"
    assert meta["gallery"]["kind"] == "folder" and meta["build"]["num_shards"] == 3
    assert not (built_index / "_shards").exists()
    emb = np.load(built_index / "embeddings.npy")
    assert emb.dtype == np.float16 and emb.shape == (12, toy.dim)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    items = pq.read_table(built_index / "items.parquet").to_pylist()
    assert [r["row"] for r in items] == list(range(12))
    for r in items:  # ids are the corpus' content ids; rows line up with the embeddings
        data = open(r["path"], "rb").read()
        assert r["id"] == hashlib.sha256(data).hexdigest()[:32]
    fresh = toy.encode(images=[r["path"] for r in items]).numpy()
    np.testing.assert_allclose(emb.astype(np.float32), fresh, atol=2e-3)
    # building again with the same retriever and gallery reuses the finished index
    again = GalleryIndex.build(gallery_dir, toy, built_index, progress=False, shard_size=5)
    assert again.meta["created"] == meta["created"]


def test_search_matches_brute_force(built_index, toy, gallery_dir):
    idx = GalleryIndex.load(built_index, toy)
    emb = np.load(built_index / "embeddings.npy")
    rng = np.random.default_rng(0)
    q = rng.standard_normal((7, toy.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    order, scores = brute_force(emb, q, 5)
    hits = idx.search(vectors=q, k=5)
    assert len(hits) == 7
    for b, row in enumerate(hits):
        assert [h.rank for h in row] == [1, 2, 3, 4, 5]
        assert [h.id for h in row] == [idx.ids[i] for i in order[b]]
        assert [h.path for h in row] == [idx.paths[i] for i in order[b]]
        np.testing.assert_allclose([h.score for h in row], scores[b], rtol=1e-5, atol=1e-5)

    # composed queries (image + instruction) go through the retriever, then the same ranking
    images = sorted(str(p) for p in gallery_dir.iterdir())[:2]
    texts = ["make it red", "a blue circle"]
    hits = idx.search(images=images, text=texts, k=3)
    order, _ = brute_force(emb, toy.encode(images=images, text=texts).numpy(), 3)
    assert [[h.id for h in row] for row in hits] == [[idx.ids[i] for i in o] for o in order]

    # a gallery image finds itself first; excluded, it disappears and k is still honoured
    first = idx.search(images=images[0], k=3)[0]
    assert first[0].path == images[0] and first[0].score == pytest.approx(1.0, abs=2e-3)
    rest = idx.search(images=images[0], k=3, exclude_ids=[first[0].id])[0]
    assert [h.id for h in rest] == [h.id for h in idx.search(images=images[0], k=4)[0][1:]]
    assert len(idx.search(text="red", k=50)[0]) == 12  # k above the gallery size: everything, ranked


def test_query_errors(built_index, toy):
    idx = GalleryIndex.load(built_index, toy)
    with pytest.raises(ValueError, match="image, a text instruction, or both"):
        idx.search(k=3)
    with pytest.raises(ValueError, match="dimension"):
        idx.search(vectors=np.ones((1, toy.dim + 1), np.float32))
    bare = GalleryIndex.load(built_index)  # no retriever: vectors only
    with pytest.raises(SearchIndexError, match="without a retriever"):
        bare.search(text="red")


def test_other_retriever_refused(built_index, toy, other_toy):
    with pytest.raises(RetrieverMismatchError) as err:
        GalleryIndex.load(built_index, other_toy)
    msg = str(err.value)
    assert toy.preprocess_id in msg and other_toy.preprocess_id in msg and f"--model {toy.spec}" in msg
    idx = GalleryIndex.load(built_index, toy)
    with pytest.raises(RetrieverMismatchError):
        idx.retriever = other_toy
    assert idx.retriever is toy


def test_unfinished_or_missing_index(tmp_path):
    with pytest.raises(SearchIndexError, match="not a finished search index"):
        GalleryIndex.load(tmp_path)
    (tmp_path / "_shards").mkdir()
    with pytest.raises(SearchIndexError, match="resumed"):
        GalleryIndex.load(tmp_path)


def test_unreadable_items_are_skipped(tmp_path, gallery_dir, toy):
    paths = sorted(str(p) for p in gallery_dir.iterdir())[:4]
    (tmp_path / "notes.jpg").write_bytes(b"this is not a picture")
    good = Image.open(paths[0])
    good.save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    extra = [str(tmp_path / "notes.jpg"), str(tmp_path / "cut.png"), str(tmp_path / "gone.png"), paths[1]]
    idx = GalleryIndex.build(paths + extra, toy, tmp_path / "idx", batch_size=3, progress=False)
    assert len(idx) == 4
    skipped = pq.read_table(tmp_path / "idx" / "skipped.parquet").to_pylist()
    assert {r["status"] for r in skipped} == {"not_an_image", "truncated", "missing", "duplicate"}
    assert idx.meta["gallery"]["skipped"] == {"not_an_image": 1, "truncated": 1, "missing": 1, "duplicate": 1}
    with pytest.raises(SearchIndexError, match="no gallery image could be read"):
        GalleryIndex.build([str(tmp_path / "notes.jpg")], toy, tmp_path / "idx2", progress=False)


def test_resume_after_crash(tmp_path, gallery_dir, toy, monkeypatch):
    reference = GalleryIndex.build(gallery_dir, toy, tmp_path / "ref", shard_size=4, progress=False)
    real = IndexBuilder.write_shard
    written = []

    def crash_on_third(self, art, shard, items, pool, bar):
        if shard == 2 and not written.count("crashed"):
            written.append("crashed")
            raise KeyboardInterrupt("simulated crash")
        written.append(shard)
        return real(self, art, shard, items, pool, bar)

    monkeypatch.setattr(IndexBuilder, "write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        GalleryIndex.build(gallery_dir, toy, tmp_path / "idx", shard_size=4, progress=False)
    assert not (tmp_path / "idx" / "index.json").exists()
    with pytest.raises(SearchIndexError, match="resumed"):
        GalleryIndex.load(tmp_path / "idx")
    with pytest.raises(SearchIndexError, match="unfinished build"):  # another retriever may not mix in
        GalleryIndex.build(gallery_dir, ToyClipRetriever(seed=2), tmp_path / "idx", shard_size=4, progress=False)
    idx = GalleryIndex.build(gallery_dir, toy, tmp_path / "idx", shard_size=4, progress=False)
    assert written == [0, 1, "crashed", 2]  # the resumed run only did the missing shard
    assert idx.ids == reference.ids
    np.testing.assert_allclose(idx.embeddings.astype(np.float32), reference.embeddings.astype(np.float32), atol=1e-3)


def test_replacing_an_index_needs_overwrite(tmp_path, gallery_dir, toy, other_toy):
    out = tmp_path / "idx"
    GalleryIndex.build(gallery_dir, toy, out, progress=False)
    (out / "keep-me.txt").write_text("user file")
    with pytest.raises(SearchIndexError, match="--overwrite"):
        GalleryIndex.build(gallery_dir, other_toy, out, progress=False)
    idx = GalleryIndex.build(gallery_dir, other_toy, out, progress=False, overwrite=True)
    assert idx.preprocess_id == other_toy.preprocess_id
    assert (out / "keep-me.txt").read_text() == "user file"  # only index files are replaced


def clustered(n: int, dim: int, centres: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivf_index_from_vectors(tmp_path):
    x = clustered(3000, 24, 30)
    ids = [f"{i:032x}" for i in range(len(x))]
    paths = [f"/gallery/{i}.jpg" for i in range(len(x))]
    opts = IndexOptions(kind="ivf", nlist=16, nprobe=16)
    idx = GalleryIndex.from_vectors(tmp_path / "ivf", x, ids, paths, spec="synthetic:1",
                                    preprocess_id="synthetic", options=opts)
    assert idx.meta["faiss"]["factory"] == "IVF16,Flat" and (tmp_path / "ivf" / "faiss.index").exists()
    q = clustered(20, 24, 30, seed=1)
    order, scores = brute_force(np.load(tmp_path / "ivf" / "embeddings.npy"), q, 10)
    got = idx.search(vectors=q, k=10)
    # all lists probed: exact
    assert [[h.id for h in row] for row in got] == [[ids[i] for i in o] for o in order]
    np.testing.assert_allclose([[h.score for h in row] for row in got], scores, atol=1e-5)
    # auto picks IVF above the threshold; fewer probes still return k results for clustered data
    auto = GalleryIndex.from_vectors(tmp_path / "auto", x, ids, paths, spec="synthetic:1", preprocess_id="synthetic",
                                     options=IndexOptions(ivf_threshold=1000, nprobe=4))
    assert auto.meta["faiss"]["factory"].startswith("IVF") and auto.meta["faiss"]["nprobe"] == 4
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10
                      for a, b in zip(auto.search(vectors=q, k=10), got)])
    assert recall > 0.8
    flat = GalleryIndex.from_vectors(tmp_path / "flat", x, ids, paths, spec="s:1", preprocess_id="s")
    assert flat.meta["faiss"]["factory"] == "Flat" and not (tmp_path / "flat" / "faiss.index").exists()


def test_corpus_artifact_gallery(tmp_path, gallery_dir, toy):
    from megapairs.artifacts import Artifact
    from megapairs.artifacts import write_table as write
    from megapairs.corpus.stage import SCHEMA, content_id

    files = sorted(gallery_dir.iterdir())[:5]
    art = Artifact(tmp_path / "corpus", "cfg")
    art.begin()
    rows = []
    for i, p in enumerate(files):
        data = p.read_bytes()
        row = {c: None for c in SCHEMA.names}
        row.update(id=content_id(data), uri=str(p), source=str(p), status="ok", caption=f"item {i}")
        if i == 3:  # a stored render (as for SVG sources): pixels come from image_bytes, not from uri
            row.update(uri=str(tmp_path / "drawing.svg"), image_bytes=data)
        if i == 4:
            row.update(status="not_an_image")
        rows.append(row)
    write(art.shard_path(0), pa.Table.from_pylist(rows, schema=SCHEMA))
    art.mark_done(0, len(rows), [art.shard_path(0).name])
    art.write_manifest(kind="corpus", num_shards=1)

    idx = GalleryIndex.build(tmp_path / "corpus", toy, tmp_path / "idx", progress=False)
    assert idx.meta["gallery"]["kind"] == "corpus" and len(idx) == 4
    assert idx.ids == [r["id"] for r in rows[:4]]
    assert idx.paths[3] == str(tmp_path / "drawing.svg") and idx.srcs[3].startswith("parquet:")
    assert idx.captions == ["item 0", "item 1", "item 2", "item 3"]
    hit = idx.search(images=str(files[3]), k=1)[0][0]
    assert hit.id == rows[3]["id"]


def test_faiss_training_and_adding_report_progress(capsys):
    from megapairs.search.index import IndexOptions, _trained_index

    vecs = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = _trained_index(vecs, "IVF4,Flat", IndexOptions(train_size=400), chunk=100)
    assert index.ntotal == 500
    err = capsys.readouterr().err
    assert "faiss IVF4,Flat: training on 400 vectors" in err and "faiss IVF4,Flat: trained in" in err
    assert "faiss IVF4,Flat add: 500 vec in" in err
