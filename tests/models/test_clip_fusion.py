"""CLIP score-fusion retriever: parity with a hand-computed BGE-VL encode, inputs, truncation,
and the saved folder running the BGE-VL README snippet through remote code."""

import functools
import json
import logging

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from megapairs.models.base import Retriever, load_retriever

NIGHT = "Make the background dark, as if the camera has taken the photo at night"
LONG = "make the background dark as if the photo was taken at night " * 12


@functools.lru_cache(maxsize=None)
def _hf_parts(folder):
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    return (CLIPModel.from_pretrained(folder).eval(), CLIPImageProcessorPil.from_pretrained(folder),
            AutoTokenizer.from_pretrained(folder))


def _reference(folder, images=None, texts=None, max_length=77):
    """BGE-VL encode by hand: CLIPImageProcessor (PIL) + tokenizer + get_*_features, sum, normalise."""
    model, image_processor, tokenizer = _hf_parts(folder)
    emb = 0
    with torch.no_grad():
        if images is not None:
            pix = image_processor(
                images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"]
            emb = emb + model.get_image_features(pixel_values=pix).pooler_output
        if texts is not None:
            tok = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                                                        return_tensors="pt")
            emb = emb + model.get_text_features(**tok).pooler_output
    return F.normalize(emb, dim=-1)


@pytest.fixture(scope="module")
def retriever(clip_dir):
    return load_retriever(f"clip:{clip_dir}", device="cpu")


def test_matches_hand_computed_bge_vl(retriever, clip_dir, image_paths):
    texts = ["make it red", "the and the", "on a beach"]
    assert isinstance(retriever, Retriever)
    for kwargs in ({"images": image_paths}, {"text": texts}, {"images": image_paths, "text": texts}):
        ours = retriever.encode(**kwargs)
        ref = _reference(clip_dir, kwargs.get("images"), kwargs.get("text"))
        assert ours.shape == (3, 16)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.norm(dim=-1), torch.ones(3))


def test_fusion_sums_unnormalised_projections(retriever, image_paths):
    both = retriever.encode(images=image_paths[0], text="make it red")
    m = retriever.model
    proc = retriever.processor()(images=image_paths[:1], texts=["make it red"])
    with torch.no_grad():
        i = m.get_image_features(pixel_values=proc["pixel_values"]).pooler_output
        t = m.get_text_features(input_ids=proc["input_ids"], attention_mask=proc["attention_mask"]).pooler_output
    torch.testing.assert_close(both, F.normalize(i + t, dim=-1))
    per_tower = F.normalize(F.normalize(i, dim=-1) + F.normalize(t, dim=-1), dim=-1)
    assert not torch.allclose(both, per_tower, atol=1e-4)  # not the normalise-then-sum variant


def test_single_pair_paths_pil_and_broadcast(retriever, image_paths):
    q = retriever.encode(images=image_paths[0], text="make it red")
    assert q.shape == (1, 16)
    pil = Image.open(image_paths[0])
    torch.testing.assert_close(retriever.encode(images=pil, text="make it red"), q)
    torch.testing.assert_close(retriever.encode(images=[image_paths[0]], text=["make it red"]), q)
    many = retriever.encode(images=image_paths[0], text=["make it red", "on a beach"])
    assert many.shape == (2, 16)
    torch.testing.assert_close(many[:1], q)
    with pytest.raises(ValueError, match="one text per image"):
        retriever.encode(images=image_paths[:2], text=["a", "b", "c"])
    with pytest.raises(ValueError):
        retriever.encode()


def test_long_text_truncated_with_warning(retriever, clip_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="megapairs"):
        ours = retriever.encode(text=LONG)
    assert "truncated" in caplog.text
    torch.testing.assert_close(ours, _reference(clip_dir, texts=[LONG], max_length=77), atol=1e-5, rtol=1e-5)


def test_max_length_option(clip_dir):
    r75 = load_retriever(f"clip:{clip_dir}", device="cpu", max_length=75)
    torch.testing.assert_close(r75.encode(text=LONG), _reference(clip_dir, texts=[LONG], max_length=75),
                               atol=1e-5, rtol=1e-5)
    assert r75.preprocess_id != load_retriever(f"clip:{clip_dir}", device="cpu").preprocess_id
    with pytest.raises(ValueError, match="tower limit"):
        load_retriever(f"clip:{clip_dir}", device="cpu", max_length=100)


def test_saved_folder_runs_bge_vl_readme_snippet(retriever, tmp_path, image_paths):
    from transformers import AutoModel

    folder = retriever.save_pretrained(tmp_path / "bge-vl-style")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["auto_map"] == {"AutoModel": "modeling_MMRet_CLIP.CLIPModel"}
    for name in ("modeling_MMRet_CLIP.py", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (folder / name).exists()

    # the seed README's CLIP snippet, verbatim apart from the names
    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True)
    model.set_processor(str(folder))
    model.eval()
    with torch.no_grad():
        query = model.encode(images=image_paths[0], text=NIGHT)
        candidates = model.encode(images=image_paths[1:])
        scores = query @ candidates.T
    assert type(model).__name__ == "CLIPModel" and query.shape == (1, 16) and scores.shape == (1, 2)

    ours = load_retriever(f"ckpt:{folder}", device="cpu")
    torch.testing.assert_close(query, ours.encode(images=image_paths[0], text=NIGHT), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(candidates, ours.encode(images=image_paths[1:]), atol=1e-5, rtol=1e-5)
    # the plain loader (no remote code) reads the same folder too
    plain = load_retriever(f"clip:{folder}", device="cpu")
    torch.testing.assert_close(plain.encode(images=image_paths[1:]), candidates, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # remote code truncates long text instead of failing
        assert model.encode(text=LONG).shape == (1, 16)
