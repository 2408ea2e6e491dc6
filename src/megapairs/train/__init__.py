"""Contrastive training of composed-image retrievers on MegaPairs-format triplets."""

from megapairs.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(cfg: TrainConfig, out, **kwargs):
    from megapairs.train.trainer import train as _train

    return _train(cfg, out, **kwargs)
