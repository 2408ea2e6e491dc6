"""BGE-VL-CLIP on tricky inputs, against what the released code does with them: `Image.open(p)
.convert("RGB")` then the checkpoint's CLIP image processor (no EXIF rotation anywhere), and the
tokenizer on the text as given (an empty string is still a text: BOS + EOS)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from megapairs.models.base import load_retriever


@functools.lru_cache(maxsize=None)
def _image_processor(folder):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil.from_pretrained(folder)


def _write(path, mode: str):
    rng = np.random.default_rng(len(mode) + ord(mode[0]))
    rgb = Image.fromarray((rng.random((37, 53, 3)) * 255).astype(np.uint8))
    if mode == "P-transparent":
        im = rgb.quantize(16)
        im.info["transparency"] = 3
    elif mode == "RGBA":
        im = rgb.convert("RGBA")
        im.putalpha(Image.fromarray((rng.random((37, 53)) * 255).astype(np.uint8)))
    elif mode == "I;16":
        im = Image.fromarray((rng.random((37, 53)) * 65535).astype(np.uint16))
    elif mode == "exif-rotated":
        im, exif = rgb, Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display": the released code ignores it, and so must we
        im.save(path, format="JPEG", exif=exif.tobytes())
        return path
    elif mode == "1x300":
        im = Image.fromarray((rng.random((1, 300, 3)) * 255).astype(np.uint8))
    else:  # L, LA, 1, CMYK
        im = rgb.convert(mode)
    im.save(path, format="TIFF" if mode == "CMYK" else "PNG")
    return path


@pytest.fixture(scope="module")
def retriever(clip_dir):
    return load_retriever(f"clip:{clip_dir}", device="cpu")


@pytest.mark.parametrize("mode", ["P-transparent", "RGBA", "LA", "L", "1", "I;16", "CMYK", "exif-rotated", "1x300"])
def test_pixels_equal_the_released_preprocessing(retriever, clip_dir, tmp_path, mode):
    path = str(_write(tmp_path / f"im.{'jpg' if mode == 'exif-rotated' else 'img'}", mode))
    ours = retriever.processor()(images=[path])["pixel_values"]  # (1, 3, H, W)
    ref = _image_processor(str(clip_dir))(images=[Image.open(path).convert("RGB")], return_tensors="pt")
    torch.testing.assert_close(ours, ref["pixel_values"], atol=1e-6, rtol=0)


def test_empty_text_is_fused_as_a_text(retriever, image_paths):
    """`encode(images, text="")` adds the embedding of the empty text (BOS + EOS), as the released
    code's `text is not None` branch does; it is not the image alone."""
    both = retriever.encode(images=image_paths[0], text="")
    image = retriever.encode(images=image_paths[0])
    text = retriever.encode(text="")
    assert not torch.allclose(both, image)
    raw = retriever.model
    inputs = retriever.processor()(images=[image_paths[0]], texts=[""])
    assert inputs["input_ids"].shape[1] == 2  # BOS, EOS
    with torch.no_grad():
        want = raw.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output \
            + raw.get_text_features(input_ids=inputs["input_ids"]).pooler_output
    torch.testing.assert_close(both, torch.nn.functional.normalize(want, dim=-1), atol=1e-5, rtol=1e-5)
    assert text.shape == both.shape
