"""Grad cache gives the gradients of the plain full-batch loss (and replays dropout masks)."""

import torch

from megapairs.models.base import load_retriever
from megapairs.train.data import TripletCollator, TripletDataset, load_triplets
from megapairs.train.gradcache import grad_cache_backward
from megapairs.train.loss import InfoNCELoss


def _batch(model, triplets, n=4, k=3):
    ds = TripletDataset(load_triplets(triplets), num_hard_negatives=k, seed=0)
    return TripletCollator(model.processor())([ds[(i, 0)] for i in range(n)])


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_cache_equals_plain_loss(clip_dir, triplets):
    model = load_retriever(f"clip:{clip_dir}", device="cpu").train()
    batch = _batch(model, triplets)
    loss_fn = InfoNCELoss(0.02)

    plain = loss_fn(model(**batch["query"]), model(**batch["candidate"]))
    plain.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)

    cached = grad_cache_backward(model, batch["query"], batch["candidate"], loss_fn, chunk_size=3)
    got = _grads(model)
    assert torch.allclose(cached, plain.detach(), atol=1e-6)
    assert got.keys() == expected.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_grad_cache_replays_dropout(clip_dir, triplets):
    from megapairs.models.clip_fusion import ClipFusionRetriever
    from megapairs.models.common import slice_inputs

    model = ClipFusionRetriever.from_pretrained(clip_dir, device="cpu")
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) or hasattr(m, "dropout"):
            if isinstance(getattr(m, "dropout", None), float):
                m.dropout = 0.3
    model.model.config.attention_dropout = 0.3
    model.train()
    batch = _batch(model, triplets)
    loss_fn = InfoNCELoss(0.05)
    with torch.no_grad():  # dropout is really on: two passes differ
        assert not torch.allclose(model(**batch["candidate"]), model(**batch["candidate"]))

    def chunked(inputs, size):  # the same chunking, with graphs kept
        n = next(iter(inputs.values())).shape[0]
        return torch.cat([model(**slice_inputs(inputs, i, min(i + size, n))) for i in range(0, n, size)])

    torch.manual_seed(1)
    ref = loss_fn(chunked(batch["query"], 3), chunked(batch["candidate"], 3))
    ref.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    got_loss = grad_cache_backward(model, batch["query"], batch["candidate"], loss_fn, chunk_size=3)
    torch.testing.assert_close(got_loss, ref.detach())
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, expected[name], atol=1e-5, rtol=1e-4, msg=name)
