"""The demo's follow-up evaluation: the one triplet evaluator on the validation split (composed /
image-only / text-only, the query image removed, ties against the model); the paired bootstrap; the
printed table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from megapairs.followup import FollowupConfig, evaluate_models, summary_table


class ColourRetriever:
    """Images embed as their mean RGB; a text names a colour that pulls the query to it. Composed =
    image + 2 x text, so a composed query finds the recoloured target and an image-only one does not."""

    COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1)}
    spec = "colour-test"
    preprocess_id = "colour-test-1"

    def encode(self, images=None, text=None, role=None):
        vecs = []
        n = len(images if images is not None else text)
        for i in range(n):
            v = np.zeros(3)
            if images is not None:
                v += np.asarray(Image.open(images[i]).convert("RGB"), np.float64).mean((0, 1)) / 255
            if text is not None:
                v += 2 * np.asarray(self.COLOURS[text[i].split()[-1]], np.float64)
            vecs.append(v / (np.linalg.norm(v) or 1))
        return torch.tensor(np.asarray(vecs, np.float32))


def _dataset(tmp_path):
    tmp_path = tmp_path / "dataset"
    colours = {"r": (230, 20, 20), "g": (20, 230, 20), "b": (20, 20, 230), "r2": (200, 60, 40)}
    (tmp_path / "images").mkdir(parents=True)
    for name, rgb in colours.items():
        Image.new("RGB", (8, 8), rgb).save(tmp_path / "images" / f"{name}.png")
    rows = [{"q_img": "images/r.png", "q_text": ["make it green"], "t_img": "images/g.png", "hns": ["images/r2.png"]},
            {"q_img": "images/r.png", "q_text": ["make it blue"], "t_img": "images/b.png", "hns": []}]
    (tmp_path / "validation").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "validation" / "part-00000.parquet")
    return tmp_path


def test_followup_scores_every_mode_with_the_one_evaluator(tmp_path, monkeypatch):
    _dataset(tmp_path)
    monkeypatch.setattr("megapairs.followup._load", lambda spec, root: ColourRetriever())
    res = evaluate_models(tmp_path, {"zero-shot": "x"}, FollowupConfig(bootstrap=200))["zero-shot"]
    per = res["details"]["per_query"]
    assert per["composed"]["R@1"] == [100.0, 100.0]  # the instruction picks the right colour
    # image-only: the red query image is removed, so the nearest is r2 (reddish), no unit's answer
    assert per["image"]["R@1"] == [0.0, 0.0]
    assert per["text"]["R@1"] == [100.0, 100.0]
    assert res["reference_policy"] == "remove" and res["num_queries"] == 2
    assert res["details"]["bootstrap"]["composed-image"]["R@1"]["diff"] == 100.0


def test_summary_table_lists_every_mode_and_interval():
    r = {f"{m}/recall@{k}": float(k) for m in ("composed", "image", "text") for k in (1, 5, 10)}
    ci = {"diff": 3.0, "low": 1.0, "high": 5.0, "n": 10}
    text = summary_table({"metric": "m", "queries": 10, "zero-shot": r, "trained": r, "retriever": "ckpt:x",
                          **{f"composed_minus_image@{k}": ci for k in (1, 5, 10)}, "index": "runs/i"})
    assert text.count("composed") >= 3 and "R@1 +3.0 [+1.0, +5.0]" in text
    assert "megapairs serve --index runs/i" in text and "ckpt:x" in text


def test_run_overwrite_reaches_the_followup_trainer(tmp_path, monkeypatch):
    """`megapairs run --overwrite` after a change of followup.train_options retrains instead of
    stopping on the old checkpoint (the trainer refuses a changed config unless told to overwrite)."""
    import megapairs.train.trainer as trainer_mod

    seen = []

    class Result:
        steps, final_loss, final_model = 1, 0.0, str(tmp_path / "retriever" / "final")

    class FakeTrainer:
        def __init__(self, cfg, out, *, overwrite=False, **kw):
            seen.append(overwrite)

        def fit(self):
            return Result()

    monkeypatch.setattr(trainer_mod, "Trainer", FakeTrainer)
    from megapairs.followup import run_followup

    run_followup(tmp_path, FollowupConfig(train=True), overwrite=True)
    run_followup(tmp_path, FollowupConfig(train=True))
    assert seen == [True, False]


def test_changed_recipe_without_overwrite_says_how_to_retrain(tmp_path, monkeypatch):
    import megapairs.train.trainer as trainer_mod
    from megapairs.configbase import ConfigError
    from megapairs.followup import run_followup

    class RefusingTrainer:
        def __init__(self, cfg, out, *, overwrite=False, **kw):
            raise ConfigError(f"{out} holds a run with a different configuration (hash a, now b); use another --out")

    monkeypatch.setattr(trainer_mod, "Trainer", RefusingTrainer)
    with pytest.raises(ConfigError, match="rerun `megapairs run` with --overwrite"):
        run_followup(tmp_path, FollowupConfig(train=True))
