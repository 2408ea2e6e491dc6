"""A copy of a query's positive elsewhere in the batch (a shared target, a sibling row's hard
negative, a top-up positive) is not a negative: batches carry image ids and the loss masks those
copies, on the plain path, the grad-cache path and across ranks."""

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from megapairs.train.data import TripletCollator, TripletDataset, image_id, load_triplets
from megapairs.train.loss import InfoNCELoss


def _perfect_shared_target():
    """Two rows with one shared target image 7; queries embed exactly as that target."""
    e = torch.eye(4)
    q = torch.stack([e[0], e[0]])  # (2, 4): both queries point at the target
    c = torch.stack([e[0], e[1], e[0], e[2]])  # rows: [target 7, query image 1], [target 7, query image 2]
    ids = torch.tensor([7, 1, 7, 2])
    return q, c, ids


def test_perfect_model_with_shared_target_has_zero_loss():
    q, c, ids = _perfect_shared_target()
    assert InfoNCELoss(0.02)(q, c).item() == pytest.approx(math.log(2), abs=1e-6)  # the copy counted as negative
    assert InfoNCELoss(0.02)(q, c, ids).item() == pytest.approx(0.0, abs=1e-6)


def test_masked_loss_matches_loop_without_the_copies():
    torch.manual_seed(0)
    b, g, d, tau = 3, 3, 8, 0.1
    q = F.normalize(torch.randn(b, d), dim=-1)
    c = F.normalize(torch.randn(b * g, d), dim=-1)
    # row 0's positive (id 10) is also row 1's 2nd negative and row 2's positive; row 1's positive
    # (id 20) is row 0's query image (its first negative)
    ids = torch.tensor([10, 20, 11, 20, 21, 10, 10, 30, 31])
    expected = 0.0
    for i in range(b):
        keep = [j for j in range(b * g) if j == i * g or ids[j] != ids[i * g]]
        scores = np.array([float(q[i] @ c[j]) / tau for j in keep])
        expected += -(scores[keep.index(i * g)] - np.log(np.exp(scores).sum()))
    got = InfoNCELoss(tau)(q, c, ids)
    assert got.item() == pytest.approx(expected / b, rel=1e-5)
    assert got.item() < InfoNCELoss(tau)(q, c).item()
    with pytest.raises(ValueError, match="candidate_ids"):
        InfoNCELoss(tau)(q, c, ids[:-1])


def _rows_with_copies(tmp_path, triplets):
    """Rows over the fixture's images where positives reappear: a shared target (rows 0, 2) and
    a sibling's hard negative (row 1 lists row 0's target)."""
    images = sorted(str(p) for p in (triplets.parent / "images").glob("*.png"))
    rows = [
        {"q_img": images[0], "q_text": ["a"], "t_img": images[5], "hns": [images[0], images[8]]},
        {"q_img": images[1], "q_text": ["b"], "t_img": images[6], "hns": [images[1], images[5]]},
        {"q_img": images[2], "q_text": ["c"], "t_img": images[5], "hns": [images[2], images[9]]},
        {"q_img": images[3], "q_text": ["d"], "t_img": images[7], "hns": [images[3], images[10]]},
    ]
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_triplets(path), images


def test_items_and_batches_carry_image_ids(tmp_path, triplets, clip_dir):
    from megapairs.models.base import load_retriever
    from megapairs.models.feature_cache import CachedTripletCollator

    data, images = _rows_with_copies(tmp_path, triplets)
    ds = TripletDataset(data, num_hard_negatives=2, seed=0)
    items = [ds.choose(p, 0) for p in range(4)]
    for it in items:
        assert it["ids"] == [image_id(ref) for ref in it["candidates"]]
    assert items[0]["ids"][0] == items[2]["ids"][0] == items[1]["ids"][2] == image_id(images[5])
    assert len({image_id(p) for p in images}) == len(images)  # distinct images, distinct ids
    assert image_id({"path": None, "bytes": b"png"}) == image_id(b"png")
    model = load_retriever(f"clip:{clip_dir}", device="cpu")
    batch = TripletCollator(model.processor())([ds[(p, 0)] for p in range(4)])
    assert batch["candidate_ids"].dtype == torch.long
    assert batch["candidate_ids"].tolist() == [i for it in items for i in it["ids"]]

    class FakeCache:  # the feature-cache collator carries the same ids
        def lookup(self, refs):
            return {"image_features": torch.zeros(len(refs), 2)}

    cached = CachedTripletCollator(model.processor(), FakeCache())(items)
    assert torch.equal(cached["candidate_ids"], batch["candidate_ids"])


@pytest.mark.parametrize("chunk", [0, 3])
def test_every_loss_path_masks_copies(tmp_path, triplets, clip_dir, chunk):
    """The step's loss (plain or grad cache) is the masked loss, not the unmasked one."""
    from megapairs.models.base import load_retriever
    from megapairs.train.config import TrainConfig
    from megapairs.train.step import StepRunner

    data, _ = _rows_with_copies(tmp_path, triplets)
    model = load_retriever(f"clip:{clip_dir}", device="cpu").train()
    ds = TripletDataset(data, num_hard_negatives=2, seed=0)
    batch = TripletCollator(model.processor())([ds[(p, 0)] for p in range(4)])
    loss_fn = InfoNCELoss(0.5)
    with torch.no_grad():
        q, c = model(**batch["query"]), model(**batch["candidate"])
    masked, plain = loss_fn(q, c, batch["candidate_ids"]).item(), loss_fn(q, c).item()
    assert abs(masked - plain) > 1e-3
    cfg = TrainConfig(model="x", data="x", temperature=0.5, grad_cache_chunk=chunk, lr=1e-4).resolve("clip", "cpu")
    got = StepRunner(model, cfg, total_steps=2, device=torch.device("cpu")).step(batch).item()
    assert got == pytest.approx(masked, rel=1e-5)


# -- across ranks ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_loss(rank, world, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    q, c, ids = _perfect_shared_target()  # rank r holds row r: the shared target lives on both ranks
    sl = slice(rank, rank + 1), slice(2 * rank, 2 * rank + 2)
    loss = InfoNCELoss(0.02, gather=True)
    out = [loss(q[sl[0]], c[sl[1]], ids[sl[1]]).item(), loss(q[sl[0]], c[sl[1]]).item()]
    torch.save(out, results / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_copies_on_other_ranks_are_masked(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_loss, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    for rank in (0, 1):
        masked, plain = torch.load(tmp_path / f"rank{rank}.pt")
        assert masked == pytest.approx(0.0, abs=1e-6) and plain == pytest.approx(math.log(2), abs=1e-6)
