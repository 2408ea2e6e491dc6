"""InfoNCE against a plain re-computation; triplet reading and per-step sampling rules."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from megapairs.train.data import StepSampler, TripletDataset, load_triplets, split_rows
from megapairs.train.loss import InfoNCELoss


def test_infonce_matches_loop():
    torch.manual_seed(0)
    b, g, d, tau = 3, 4, 8, 0.05
    q = F.normalize(torch.randn(b, d), dim=-1)
    c = F.normalize(torch.randn(b * g, d), dim=-1)
    expected = 0.0
    for i in range(b):
        scores = [float(q[i] @ c[j]) / tau for j in range(b * g)]  # every candidate in the batch
        pos = scores[i * g]  # the query's own positive heads its group
        expected += -(pos - np.log(np.sum(np.exp(scores))))
    expected /= b
    assert InfoNCELoss(tau)(q, c).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError):
        InfoNCELoss(tau)(q, c[:-1])


def test_reads_parquet_jsonl_and_aliases(tmp_path, triplets):
    from megapairs.train.synthetic import write_synthetic_triplets

    a = load_triplets(triplets)
    b = load_triplets(write_synthetic_triplets(tmp_path / "j", fmt="jsonl"))
    assert len(a) == len(b) == 16
    ra, rb = a.row(0), b.row(0)  # same generator seed: same rows, different folders
    assert ra["q_text"] == rb["q_text"] and ra["t_img"].endswith(rb["t_img"].split("/j/")[1])
    row = a.row(0)
    assert row["hns"][0] == row["q_img"] and row["q_img"].startswith("/")
    # the third-party column names
    rows = [json.loads(line) for line in (tmp_path / "j" / "triplets.jsonl").read_text().splitlines()]
    alias = [{"query_image": r["q_img"], "query_texts": r["q_text"], "target_image": r["t_img"],
              "hard_negative_images": r["hns"]} for r in rows]
    (tmp_path / "j" / "alias.jsonl").write_text("".join(json.dumps(r) + "\n" for r in alias))
    c = load_triplets(tmp_path / "j" / "alias.jsonl")
    assert c.row(3) == b.row(3)


def test_query_image_always_a_negative_and_seeded_choices(triplets):
    data = load_triplets(triplets)
    ds = TripletDataset(data, num_hard_negatives=4, seed=3)
    for pos in range(len(ds)):
        item = ds.choose(pos, epoch=0)
        row = data.row(pos)
        assert item["candidates"][0] == row["t_img"]  # positive first
        assert item["candidates"][1] == row["q_img"]  # then the query image, always
        assert len(item["candidates"]) == 5 and item["text"] in row["q_text"]
        assert ds.choose(pos, 0) == item  # deterministic
    texts = {ds.choose(0, e)["text"] for e in range(30)}
    assert len(texts) > 1  # instructions vary across epochs
    # rows with too few mined negatives are topped up with other rows' positives
    big = TripletDataset(data, num_hard_negatives=8, seed=0).choose(0, 0)
    assert len(big["candidates"]) == 9 and big["candidates"][1] == data.row(0)["q_img"]


def test_step_sampler_is_a_function_of_the_step():
    s = StepSampler(10, 4, seed=0, start_step=0, total_steps=6)
    full = list(s)
    assert len(full) == 6 and all(len(b) == 4 for b in full)
    first_epoch = [p for p, _ in full[0] + full[1]]
    assert len(first_epoch) == len(set(first_epoch))  # no repeats within an epoch
    assert [e for _, e in full[2]] == [1] * 4  # 10 // 4 = 2 steps per epoch
    assert list(StepSampler(10, 4, seed=0, start_step=3, total_steps=6)) == full[3:]
    ranks = [list(StepSampler(10, 4, seed=0, start_step=0, total_steps=6, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == full
    train, held = split_rows(10, 3, seed=0)
    assert len(held) == 3 and not set(train) & set(held)
