"""Issue 10: the metrics as the benchmarks' own code computes them, on hand-made tricky inputs
(ties, repeated ids), plus the tie policy that never flatters a model and the MMEB prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from megapairs.evaluate import evaluate
from megapairs.evaluate import metrics as M
from megapairs.evaluate.bootstrap import compare_results, paired_bootstrap


class ConstantRetriever:
    """Every input gets the same unit vector: every score ties."""

    spec, preprocess_id = "constant:test", "constant"

    def encode(self, images=None, text=None):
        n = len(images) if isinstance(images, (list, tuple)) else len(text) if isinstance(text, (list, tuple)) else 1
        return torch.full((n, 4), 0.5)  # (n, 4), norm 1


def opts(tmp_path: Path, **kw) -> dict:
    return {"cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "out"), "progress": False, **kw}


# -- 1. CIRR subset ranking ties follow gallery order ------------------------------------------------
def test_cirr_subset_ties_follow_gallery_order_not_member_order():
    members = ["m5", "m4", "m3", "m2", "m1", "m0"]  # the img_set lists them in reverse gallery order
    positions = [5, 4, 3, 2, 1, 0]
    scores = np.zeros(6)  # all tie
    assert M.subset_ranking(scores, members, "m2", positions) == ["m0", "m1", "m3", "m4", "m5"]
    got = M.cirr_recall_subset([scores], [members], ["m2"], ["m0"], (1,), positions=[positions])
    assert got == {"Rsubset@1": 100.0}
    assert M.subset_ranking(np.array([0.1, 0.9, 0.9]), ["a", "b", "b"], None) == ["b", "a"]  # repeated member once


def test_cirr_all_ties_end_to_end_writes_gallery_order(cirr_dir: Path, tmp_path: Path):
    cap = cirr_dir / "captions" / "cap.rc2.val.json"
    rows = json.loads(cap.read_text())
    for r in rows:
        r["img_set"]["members"] = list(reversed(r["img_set"]["members"]))
    cap.write_text(json.dumps(rows))
    res = evaluate("cirr", cirr_dir, ConstantRetriever(), opts(tmp_path))
    sub = json.loads((tmp_path / "out" / "cirr_val_recall_subset.json").read_text())
    gallery = list(json.loads((cirr_dir / "image_splits" / "split.rc2.val.json").read_text()))
    for r in rows:
        want = [m for m in gallery if m in r["img_set"]["members"] and m != r["reference"]][:3]
        assert sub[str(r["pairid"])] == want
    assert res["metrics"]["soft/R@1"] == pytest.approx(res["metrics"]["R@1"])  # one soft label of 1.0 each


# -- 2. CIRCO divides by the ground-truth list as listed -------------------------------------------
def test_circo_repeated_ground_truth_uses_the_listed_count():
    # official: precisions = cumsum(isin) * isin / rank; AP@5 = sum / min(len([7, 7]), 5) = 1 / 2
    assert M.average_precision_at_k([7, 1, 2, 3, 4], [7, 7], 5) == pytest.approx(0.5)
    assert M.circo_map([[7, 1, 2, 3, 4]], [[7, 7]], ks=(5, 1)) == {"mAP@5": 50.0, "mAP@1": 100.0}


# -- 3. the numbers the official code reports --------------------------------------------------------
def test_cirr_soft_recall_as_cirplant():
    soft = [{"t": 1.0, "u": 0.5, "v": -1.0}, {"t": 1.0}]
    rankings = [["v", "u", "t"], ["x", "t"]]
    # q0: top1 {v} -> max(0, -1) = 0; top2 {v, u} -> 0.5; top3 -> 1.0. q1: top1 miss; top2 hit
    assert M.soft_recall_at_k(rankings, soft, (1, 2, 3)) == {"R@1": 0.0, "R@2": 75.0, "R@3": 100.0}


def test_fashioniq_reports_mrr_and_more_recalls(fiq_dir: Path, retriever, tmp_path: Path):
    res = evaluate("fashioniq", fiq_dir, retriever, opts(tmp_path))
    m = res["metrics"]
    for k in (1, 5, 10, 20, 50, 100):
        assert f"dress/R@{k}" in m and f"avg/MRR@{k}" in m
    ranks = json.loads((tmp_path / "out" / "fashioniq_dress_val_rankings.json").read_text())
    first = [r["ranking"].index(r["target"]) + 1 for r in ranks]  # 8 images: the target is always ranked
    assert m["dress/MRR@100"] == pytest.approx(100 * np.mean([1 / i for i in first]))
    assert m["dress/MRR@1"] == m["dress/R@1"]


def test_mrr_as_megapairs_script():
    assert M.mrr_at_k([["a", "b", "c"], ["c", "a"]], ["b", "z"], (1, 2)) == {"MRR@1": 0.0, "MRR@2": 25.0}


# -- 4. ties: the official number as headline, the pessimistic one beside it, and a warning ---------
def test_constant_model_genecis_official_headline_and_pessimistic(genecis_dir: Path, tmp_path: Path, caplog):
    res = evaluate("genecis", genecis_dir, ConstantRetriever(), opts(tmp_path))
    assert res["metrics"]["avg/R@1"] == 100.0  # the official sort hands ties to the target, listed first
    assert res["metrics"]["pessimistic/avg/R@1"] == 0.0
    for task in ("focus_object", "focus_attribute"):
        assert res["details"][task]["tied_rankings"] == res["details"][task]["queries"] > 0
    assert "tie the target" in caplog.text


def test_constant_model_mmeb_official_headline_and_pessimistic(mmeb_dir: Path, tmp_path: Path, caplog):
    res = evaluate("mmeb", mmeb_dir, ConstantRetriever(), opts(tmp_path))
    assert res["metrics"]["Overall"] == 100.0 and res["metrics"]["pessimistic/Overall"] == 0.0  # np.argmax
    assert all(n > 0 for n in res["details"]["tied_rankings"].values())
    assert "tie the positive" in caplog.text


def test_positive_listed_twice_is_not_its_own_rival():
    keys = [["p", "x", "p"]]
    scores = [np.array([0.5, 0.1, 0.5])]
    assert M.precision_at_1(scores, ties="pessimistic", keys=keys) == 100.0
    assert M.tied_rankings(scores, 0, keys) == 0
    assert M.precision_at_1(scores, ties="pessimistic") == 0.0  # without keys the copy is a tied rival


def test_constant_model_gets_no_free_triplet_hits(triplets_file: Path, tmp_path: Path):
    res = evaluate("triplets", triplets_file, ConstantRetriever(), opts(tmp_path, bootstrap=50))
    assert res["metrics"]["composed/R@1"] == 0.0 and res["metrics"]["image/R@1"] == 0.0


# -- 5. the MLLM gets each MMEB task's instruction in its instruction slot -------------------------
class PromptRecorder:
    """An instruction-slot retriever that records the BGE-VL-MLLM query prompts it would build."""

    spec, preprocess_id = "prompts:test", "prompts"

    def __init__(self) -> None:
        from megapairs.models.mllm import CIR_INSTRUCTION

        self.instruction = CIR_INSTRUCTION
        self.prompts: list[str] = []

    def encode(self, images=None, text=None, role=None, instruction=None):
        from megapairs.models.mllm import candidate_prompt, query_prompt

        n = len(images) if images is not None else len(text)
        for i in range(n):
            t = text[i] if text is not None else None
            own = instruction[i] if instruction is not None else None
            self.prompts.append(candidate_prompt(t, images is not None) if role == "candidate" else
                                query_prompt(t, images is not None, own if own is not None else self.instruction))
        return torch.full((n, 4), 0.5)


def test_mmeb_prompt_uses_the_task_instruction(mmeb_dir: Path, tmp_path: Path):
    rec = PromptRecorder()
    res = evaluate("mmeb", mmeb_dir, rec, opts(tmp_path))
    assert "[INST] \n <instruct> Represent the given image for classification <query>  <image> [/INST]" in rec.prompts
    assert not any("Retrieve the target image" in p for p in rec.prompts)
    assert "per task" in res["instruction"]["source"]
    override = PromptRecorder()
    res = evaluate("mmeb", mmeb_dir, override, opts(tmp_path, instruction="Find it"))
    assert res["instruction"] == {"source": "--instruction", "text": "Find it"}
    queries = [p for p in override.prompts if "<instruct>" in p]
    assert queries and all(p.startswith("[INST] \n <instruct> Find it <query>") for p in queries)
    assert override.instruction.startswith("Retrieve")  # restored after the run


def test_mllm_processor_takes_a_per_row_instruction():
    from megapairs.models.mllm import MLLMProcessor

    class HFStub:
        class tokenizer:  # noqa: N801
            padding_side = "right"

        def __call__(self, text, **kwargs):
            self.text = text
            return {"input_ids": torch.zeros(len(text), 1)}

    hf = HFStub()
    MLLMProcessor(hf, "default task")(texts=["q1", "q2"], role="query", instructions=["own task", None])
    assert hf.text == ["[INST] \n <instruct> own task <query>  q1 \n [/INST]",
                       "[INST] \n <instruct> default task <query>  q2 \n [/INST]"]


def test_dtype_and_instruction_are_recorded(circo_dir: Path, retriever, tmp_path: Path):
    res = evaluate("circo", circo_dir, retriever, opts(tmp_path, dtype="bf16"))
    assert res["dtype"] == "bfloat16" and res["instruction"]["text"] is None
    with pytest.raises(Exception, match="no instruction slot"):
        evaluate("circo", circo_dir, retriever, opts(tmp_path, instruction="x"))


# -- 6. one triplet evaluator with a paired bootstrap -------------------------------------------------
def test_paired_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200) * 100.0
    b = np.minimum(100.0, a + (rng.random(200) < 0.2) * 100.0)  # b never worse than a
    one, two = paired_bootstrap(a, b, seed=3), paired_bootstrap(a, b, seed=3)
    assert one == two and one["diff"] == pytest.approx(float(np.mean(b - a)))
    assert 0 < one["low"] <= one["diff"] <= one["high"]
    same = paired_bootstrap(a, a, resamples=100)
    assert same["low"] == same["high"] == 0.0  # pairing: identical scores give a zero-width interval
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:10])


def test_triplets_report_modes_side_by_side_with_intervals(triplets_file: Path, retriever, tmp_path: Path):
    res = evaluate("triplets", triplets_file, retriever, opts(tmp_path, bootstrap=200))
    boot = res["details"]["bootstrap"]["composed-image"]["R@1"]
    assert boot["diff"] == pytest.approx(res["metrics"]["composed/R@1"] - res["metrics"]["image/R@1"])
    assert boot["low"] <= boot["diff"] <= boot["high"]
    other = evaluate("triplets", triplets_file, ConstantRetriever(), opts(tmp_path / "b", bootstrap=200))
    cmp = compare_results(res, other, "composed/R@1", resamples=100)
    assert cmp["diff"] == pytest.approx(other["metrics"]["composed/R@1"] - res["metrics"]["composed/R@1"])
    removed = evaluate("triplets", triplets_file, retriever, opts(tmp_path / "c", reference_policy="remove",
                                                                      bootstrap=0))
    assert removed["reference_policy"] == "remove" and "bootstrap" not in removed["details"]
    md = (tmp_path / "out" / "triplets_val.md").read_text()
    assert "| metric (%) | composed | image | text |" in md


def test_trainer_holdout_evaluator_is_the_same_and_pessimistic():
    """The trainer's check scores a constant model 0 (the old one gave every tie to the target)."""
    import pyarrow as pa

    from megapairs.train.data import SCHEMA, TripletTable
    from megapairs.train.evaluate import recall_on_triplets

    table = pa.table({"q_img": ["a", "c"], "q_text": [["x"], ["y"]], "t_img": ["b", "d"], "hns": [["a"], ["c"]],
                      "t_caption": [None, None]}, schema=SCHEMA)

    class Constant:
        training = False

        def eval(self):
            return self

        def train(self, mode=True):
            return self

        def encode_inputs(self, role, images, texts):
            n = len(images) if images is not None else len(texts)
            return torch.full((n, 4), 0.5)

    out = recall_on_triplets(Constant(), TripletTable(table, "mem"), np.arange(2), bootstrap=20)
    assert out["composed/R@1"] == 0.0 and out["gallery"] == 4.0
    assert "composed-image/R@1_low" in out


# -- 6. an empty query text is still a text (BGE-VL encodes every CIR query as image + text) --------
def test_empty_caption_is_a_composed_query_not_an_image_query(tmp_path: Path):
    from PIL import Image

    from megapairs.evaluate.common import EvalOptions, Item
    from megapairs.evaluate.context import Context

    class Recorder:
        spec, preprocess_id = "rec:test", "rec"

        def __init__(self) -> None:
            self.calls: list = []

        def encode(self, images=None, text=None):
            self.calls.append(text)
            return torch.full((len(images if images is not None else text), 4), 0.5)

    path = tmp_path / "q.png"
    Image.new("RGB", (8, 8)).save(path)
    rec = Recorder()
    Context(rec, EvalOptions(progress=False), "cirr").encode(
        [Item("0", image=path, text=""), Item("1", image=path), Item("2", image=path, text="darker")], "q")
    # "" goes with the composed queries (BGE-VL's encode(images, text="") fuses the empty-text embedding);
    # only the item without any text is embedded as an image alone
    assert sorted(map(str, rec.calls)) == sorted(["['', 'darker']", "None"])
