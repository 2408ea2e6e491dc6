"""A tiny random CLIP checkpoint and a small synthetic triplet set for trainer tests."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def triplets(tmp_path_factory):
    from megapairs.train.synthetic import write_synthetic_triplets

    return write_synthetic_triplets(tmp_path_factory.mktemp("triplets"), n_images=24, n_rows=16)


def tiny_config(clip_dir, data, **kw):
    from megapairs.train.config import TrainConfig

    base = dict(model=f"clip:{clip_dir}", data=str(data), batch_size=4, max_steps=6, lr=1e-3, warmup_ratio=0.2,
                num_workers=0, save_every=2, log_every=1, device="cpu", num_hard_negatives=3)
    base.update(kw)
    return TrainConfig(**base)
