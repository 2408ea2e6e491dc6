"""`load_sentence_transformer(folder)`: a checkpoint saved by `megapairs train` loads in
sentence-transformers and encodes as megapairs does; folders naming other code are refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

st = pytest.importorskip("sentence_transformers")

from megapairs.errors import UserError, describe  # noqa: E402
from megapairs.models.base import load_retriever  # noqa: E402
from megapairs.models.st_module import load_sentence_transformer  # noqa: E402
from megapairs.train.config import TrainConfig  # noqa: E402
from megapairs.train.data import load_triplets  # noqa: E402
from megapairs.train.trainer import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def trained(clip_dir, triplets, tmp_path_factory):
    cfg = TrainConfig(model=f"clip:{clip_dir}", data=str(triplets), batch_size=4, max_steps=1, num_workers=0,
                      num_hard_negatives=2, device="cpu", save_every=100, log_every=1, eval_size=0)
    return Trainer(cfg, tmp_path_factory.mktemp("st") / "run").fit().final_model


def test_loads_and_encodes_like_megapairs(trained, triplets):
    data = load_triplets(triplets)
    imgs = [data.row(i)["q_img"] for i in range(3)]
    texts = [data.row(i)["q_text"][0] for i in range(3)]
    ours = load_retriever(f"ckpt:{trained}", device="cpu")
    for folder in (trained, trained.parent):  # the model folder, or the training run above it
        model = load_sentence_transformer(folder, device="cpu")
        q = model.encode([{"image": im, "text": t} for im, t in zip(imgs, texts)], convert_to_tensor=True)
        torch.testing.assert_close(q.cpu(), ours.encode(images=imgs, text=texts), rtol=1e-5, atol=1e-5)


def test_refuses_folders_that_would_run_other_code(trained, tmp_path):
    evil = tmp_path / "evil"
    shutil.copytree(trained, evil)
    (evil / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil.Module"}]))
    with pytest.raises(UserError, match="evil.Module"):
        load_sentence_transformer(evil)
    (evil / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                    "type": "sentence_transformers.models.Transformer"}]))
    with pytest.raises(UserError, match="auto_map"):  # the copied config.json maps to modeling_*.py
        load_sentence_transformer(evil)
    (evil / "modules.json").unlink()
    with pytest.raises(UserError) as ei:
        load_sentence_transformer(evil)
    code, line = describe(ei.value)
    assert code == 2 and "no modules.json" in line
