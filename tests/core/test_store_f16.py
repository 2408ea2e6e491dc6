"""The fast float16 -> float32 conversion used by every read of the embeddings store."""

from __future__ import annotations

import numpy as np

from megapairs.embed import store
from megapairs.embed.store import Vectors, f16_to_f32


def _bits(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x).view(np.uint32).tobytes()


def test_every_float16_converts_bit_for_bit_like_astype(monkeypatch):
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)  # +-0, subnormals, inf, nan
    finite = every[np.isfinite(every)]
    numbers = every[~np.isnan(every)]  # the finite ones and +-inf
    for x in (finite, numbers, finite[::-1].reshape(-1, 8), np.zeros((0, 4), np.float16)):
        out = f16_to_f32(x)
        assert out.dtype == np.float32 and out.shape == x.shape
        assert _bits(out) == _bits(x.astype(np.float32))
    assert np.isnan(f16_to_f32(every[np.isnan(every)])).all()  # a NaN stays a NaN (payload not kept)
    monkeypatch.setattr(store, "F16_CHUNK", 7)  # chunks that cut rows, a short last one
    assert _bits(f16_to_f32(finite.reshape(-1, 4))) == _bits(finite.reshape(-1, 4).astype(np.float32))


def test_vectors_reads_return_the_astype_values(monkeypatch):
    monkeypatch.setattr(store, "F16_CHUNK", 5)
    rng = np.random.default_rng(0)
    parts = [(rng.normal(size=(n, 6)) * 0.05).astype(np.float16) for n in (4, 7)]
    whole = np.concatenate(parts).astype(np.float32)
    vec = Vectors(parts, 6)
    rows = np.array([10, 0, 5, 3, 3])
    assert _bits(vec[rows]) == _bits(whole[rows])  # gather over both shards
    assert _bits(vec[2:9]) == _bits(whole[2:9])  # contiguous block across the shard boundary
    assert _bits(Vectors(parts[:1], 6)[rows[rows < 4]]) == _bits(whole[rows[rows < 4]])  # one shard
