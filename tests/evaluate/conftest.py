"""Fixtures for the evaluation tests: a tiny real CLIP retriever (random weights, built from a config,
no downloads) and tiny benchmark folders written in each benchmark's official file layout."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


class TinyClipRetriever:
    """Implements the Retriever protocol with a randomly initialised `transformers.CLIPModel`.

    Composed queries use BGE-VL's score fusion: normalize(text_proj + image_proj). Text is tokenised
    by hashing words (no tokenizer files needed); images are resized to 32x32 and CLIP-normalised.
    """

    spec = "tiny-clip:test"

    def __init__(self, seed: int = 0, size: int = 32) -> None:
        import torch
        from transformers import CLIPConfig, CLIPModel

        cfg = CLIPConfig(
            text_config=dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=24, bos_token_id=0,
                             eos_token_id=1, pad_token_id=2),
            vision_config=dict(image_size=size, patch_size=8, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=1, num_attention_heads=2),
            projection_dim=16)
        torch.manual_seed(seed)
        self.model = CLIPModel(cfg).eval()
        self.size = size
        self._pid = f"tiny-clip-seed{seed}-{size}px"

    @property
    def preprocess_id(self) -> str:
        return self._pid

    def _pixels(self, images: Sequence[Any]):
        import torch
        from PIL import Image

        arr = []
        for im in images:
            im = im if isinstance(im, Image.Image) else Image.open(im)
            im = im.convert("RGB").resize((self.size, self.size))
            arr.append((np.asarray(im, dtype=np.float32) / 255.0 - MEAN) / STD)
        return torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2)  # (B, 3, S, S)

    def _tokens(self, texts: Sequence[str]):
        import torch

        ids = []
        for t in texts:
            words = [3 + int(hashlib.md5(w.encode()).hexdigest(), 16) % 509 for w in t.lower().split()][:20]
            ids.append([0, *words, 1])
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([x + [2] * (width - len(x)) for x in ids])  # (B, L)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        return input_ids, mask

    def encode(self, images=None, text=None):
        import torch

        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        if text is not None and isinstance(text, str):
            text = [text]
        emb = 0
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: thread start-up costs more than the maths
        try:
            with torch.no_grad():
                if images is not None:
                    emb = emb + self.model.get_image_features(pixel_values=self._pixels(images)).pooler_output
                if text is not None:
                    ids, mask = self._tokens(text)
                    emb = emb + self.model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        finally:
            torch.set_num_threads(threads)
        return torch.nn.functional.normalize(emb, dim=-1)  # (B, 16)


@pytest.fixture(scope="session")
def retriever() -> TinyClipRetriever:
    return TinyClipRetriever()


def write_png(path: Path, seed: int, size: tuple[int, int] = (24, 24)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def dump(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def circo_dir(tmp_path: Path) -> Path:
    """12 unlabeled 'COCO' images; 3 val queries (one with a single GT), 2 test queries."""
    root = tmp_path / "circo"
    ids = [101 + i for i in range(12)]
    images = [{"id": i, "file_name": f"{i:012d}.png"} for i in ids]
    for k, i in enumerate(ids):
        write_png(root / "COCO2017_unlabeled" / "unlabeled2017" / f"{i:012d}.png", seed=k)
    dump(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json", {"images": images})
    val = [
        {"id": 0, "reference_img_id": 101, "target_img_id": 102, "relative_caption": "has two dogs",
         "shared_concept": "shows an animal", "gt_img_ids": [102, 105, 107], "semantic_aspects": ["cardinality"]},
        {"id": 1, "reference_img_id": 103, "target_img_id": 104, "relative_caption": "is at night",
         "shared_concept": "is a street", "gt_img_ids": [104], "semantic_aspects": ["style", "cardinality"]},
        {"id": 2, "reference_img_id": 110, "target_img_id": 111, "relative_caption": "is red",
         "shared_concept": "has a car", "gt_img_ids": [111, 112], "semantic_aspects": []},
    ]
    test = [{"id": 7, "reference_img_id": 105, "relative_caption": "is blue", "shared_concept": "a bus"},
            {"id": 8, "reference_img_id": 106, "relative_caption": "is empty", "shared_concept": "a room"}]
    dump(root / "annotations" / "val.json", val)
    dump(root / "annotations" / "test.json", test)
    return root


@pytest.fixture
def cirr_dir(tmp_path: Path) -> Path:
    """12 'dev' images in img_raw/dev; two image sets of 6; 3 val pairs."""
    root = tmp_path / "cirr"
    names = [f"dev-{i}-0-img0" for i in range(12)]
    for k, n in enumerate(names):
        write_png(root / "img_raw" / "dev" / f"{n}.png", seed=100 + k)
    dump(root / "image_splits" / "split.rc2.val.json", {n: f"./dev/{n}.png" for n in names})
    set_a, set_b = names[:6], names[6:]
    caps = [
        {"pairid": 1, "reference": set_a[0], "target_hard": set_a[1], "target_soft": {set_a[1]: 1.0},
         "caption": "add a dog", "img_set": {"id": 1, "members": set_a, "reference_rank": 0, "target_rank": 1}},
        {"pairid": 2, "reference": set_a[2], "target_hard": set_a[5], "target_soft": {set_a[5]: 1.0},
         "caption": "make it night", "img_set": {"id": 1, "members": set_a, "reference_rank": 2, "target_rank": 5}},
        {"pairid": 3, "reference": set_b[3], "target_hard": set_b[0], "target_soft": {set_b[0]: 1.0},
         "caption": "two cats instead", "img_set": {"id": 2, "members": set_b, "reference_rank": 3, "target_rank": 0}},
    ]
    dump(root / "captions" / "cap.rc2.val.json", caps)
    test = [{k: v for k, v in c.items() if k not in ("target_hard", "target_soft")} for c in caps]
    dump(root / "captions" / "cap.rc2.test1.json", test)
    dump(root / "image_splits" / "split.rc2.test1.json", {n: f"./dev/{n}.png" for n in names})
    return root


@pytest.fixture
def fiq_dir(tmp_path: Path) -> Path:
    root = tmp_path / "fiq"
    for c, cat in enumerate(("dress", "shirt", "toptee")):
        names = [f"B{cat[:2].upper()}{i:04d}" for i in range(8)]
        for k, n in enumerate(names):
            write_png(root / "images" / f"{n}.png", seed=200 + 10 * c + k)
        dump(root / "image_splits" / f"split.{cat}.val.json", names)
        dump(root / "captions" / f"cap.{cat}.val.json", [
            {"target": names[1], "candidate": names[0], "captions": ["is longer", "has red dots"]},
            {"target": names[3], "candidate": names[2], "captions": ["is darker", "no sleeves"]},
        ])
    return root


@pytest.fixture
def genecis_dir(tmp_path: Path) -> Path:
    root = tmp_path / "genecis"
    for k in range(8):
        write_png(root / "val2017" / f"{k + 1:012d}.png", seed=300 + k)
        write_png(root / "VG_100K" / f"{500 + k}.png", seed=400 + k, size=(40, 30))
    # the loader opens <id>.jpg; PIL reads PNG content regardless of the extension
    for p in list(root.rglob("*.png")):
        p.rename(p.with_suffix(".jpg"))
    obj = lambda i: {"val_image_id": i}  # noqa: E731
    att = lambda i: {"image_id": 500 + i, "instance_bbox": [5, 4, 20, 10]}  # noqa: E731
    for task in ("focus_object", "change_object"):
        rows = [{"reference": obj(1), "target": obj(2), "condition": "dog", "gallery": [obj(3), obj(4), obj(5)]},
                {"reference": obj(6), "target": obj(7), "condition": "bus", "gallery": [obj(8), obj(1), obj(2)]},
                {"reference": obj(1), "target": obj(3), "condition": "odd", "gallery": [obj(4)]}]  # off-modal: dropped
        dump(root / "genecis" / f"{task}.json", rows)
    for task in ("focus_attribute", "change_attribute"):
        rows = [{"reference": att(0), "target": att(1), "condition": "color", "gallery": [att(2), att(3)]},
                {"reference": att(4), "target": att(5), "condition": "red", "gallery": [att(6), att(7)]}]
        dump(root / "genecis" / f"{task}.json", rows)
    return root


@pytest.fixture
def mmeb_dir(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "mmeb"
    for k in range(6):
        write_png(root / "eval_images" / "CIRR" / f"c{k}.png", seed=500 + k)
    ask = "<|image_1|>\nGiven an image, find a similar everyday image"
    tgt = "<|image_1|>\nRepresent the given image."
    cirr = {"qry_text": [f"{ask} with the described changes: add a dog", f"{ask}: make it blue"],
            "qry_img_path": ["CIRR/c0.png", "CIRR/c3.png"],
            "tgt_text": [[tgt] * 3, [tgt] * 3],
            "tgt_img_path": [["CIRR/c1.png", "CIRR/c2.png", "CIRR/c3.png"],
                             ["CIRR/c4.png", "CIRR/c5.png", "CIRR/c0.png"]]}
    (root / "CIRR").mkdir(parents=True)
    pq.write_table(pa.table(cirr), root / "CIRR" / "test-00000-of-00001.parquet")
    cls = [{"qry_text": "<|image_1|> Represent the given image for classification", "qry_img_path": "CIRR/c2.png",
            "tgt_text": ["dog", "cat", "car"], "tgt_img_path": ["", "", ""]},
           {"qry_text": "<|image_1|> Represent the given image for classification", "qry_img_path": "CIRR/c5.png",
            "tgt_text": ["car", "dog", "cat"], "tgt_img_path": ["", "", ""]}]
    (root / "ImageNet-1K.jsonl").write_text("\n".join(json.dumps(r) for r in cls) + "\n")
    return root


@pytest.fixture
def triplets_file(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "triplets"
    for k in range(8):
        write_png(root / "images" / f"i{k}.png", seed=600 + k)
    rows = {"q_img": ["images/i0.png", "images/i2.png", "images/i0.png"],
            "q_text": [["make it red", "paint it red"], ["add a tree"], ["show it at night"]],
            "t_img": ["images/i1.png", "images/i3.png", "images/i4.png"],
            "hns": [["images/i0.png", "images/i5.png"], ["images/i2.png", "images/i6.png"],
                    ["images/i0.png", "images/i7.png"]]}
    path = root / "part-00000.parquet"
    pq.write_table(pa.table(rows), path)
    return path
