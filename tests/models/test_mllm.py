"""LLaVA-NeXT embedding retriever on a tiny random model: prompts, last-token pooling with left
padding, no global patching, save / load."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from megapairs.models.base import load_retriever
from megapairs.models.mllm import CIR_INSTRUCTION, candidate_prompt, query_prompt


def test_prompt_strings():
    assert query_prompt("make it dark", True, "Retrieve: ") == \
        "[INST] \n <instruct> Retrieve:  <query>  make it dark \n <image> [/INST]"
    assert query_prompt("make it dark", False, None) == "[INST] \n <instruct>  <query> make it dark \n [/INST]"
    assert candidate_prompt(None, True) == "[INST]  <image> [/INST]"
    assert candidate_prompt("a dog", False) == "[INST]  a dog \n [/INST]"


@pytest.fixture(scope="module")
def mllm(llava_dir):
    import transformers

    before = transformers.MistralForCausalLM.forward
    r = load_retriever(f"mllm:{llava_dir}", device="cpu")
    assert transformers.MistralForCausalLM.forward is before  # nothing patched globally
    return r


def test_encode_is_normalised_last_token_of_left_padded_prompt(mllm, image_paths):
    texts = ["make it dark", "make the background dark, as if the camera has taken the photo at night"]
    q = mllm.encode(images=image_paths[:2], text=texts)
    c = mllm.encode(images=image_paths)
    assert q.shape == (2, 32) and c.shape == (3, 32)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(2))

    # by hand: processor on 512x512 images, base model, last position
    proc = mllm.hf_processor
    assert proc.tokenizer.padding_side == "left"
    images = [Image.open(p).convert("RGB").resize((512, 512)) for p in image_paths[:2]]
    prompts = [query_prompt(t, True, CIR_INSTRUCTION) for t in texts]
    batch = proc(images=images, text=prompts, return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0  # the short prompt is padded on the left
    with torch.no_grad():
        hidden = mllm.model.model(**batch).last_hidden_state
    torch.testing.assert_close(q, F.normalize(hidden[:, -1], dim=-1), atol=1e-5, rtol=1e-5)

    # left padding does not change a row's embedding
    alone = mllm.encode(images=image_paths[0], text=texts[0])
    torch.testing.assert_close(alone, q[:1], atol=1e-4, rtol=1e-4)


def test_save_and_reload(mllm, tmp_path, image_paths):
    folder = mllm.save_pretrained(tmp_path / "mllm")
    again = load_retriever(f"ckpt:{folder}", device="cpu")
    assert again.instruction == mllm.instruction
    torch.testing.assert_close(again.encode(images=image_paths), mllm.encode(images=image_paths), atol=1e-5, rtol=1e-5)


def test_empty_text_is_a_text_as_in_the_released_prompt():
    # released prepare_text_input: `if text is not None: text_input = f"{text_input} {text} \n"`
    assert query_prompt("", True, "Retrieve: ") == "[INST] \n <instruct> Retrieve:  <query>   \n <image> [/INST]"
    assert query_prompt(None, True, "Retrieve: ") == "[INST] \n <instruct> Retrieve:  <query>  <image> [/INST]"
    assert candidate_prompt("", True) == "[INST]   \n <image> [/INST]"


def test_empty_instruction_is_an_instruction_as_in_the_released_prompt():
    # released: `if task_instruction is None: ...  elif task_instruction is not None: f"... {task_instruction} <query> "`
    assert query_prompt("dark", True, "") == "[INST] \n <instruct>  <query>  dark \n <image> [/INST]"
    assert query_prompt("dark", True, None) == "[INST] \n <instruct>  <query> dark \n <image> [/INST]"


def test_text_list_may_mark_image_only_rows_with_none(mllm, image_paths):
    mixed = mllm.encode(images=image_paths[:2], text=["make it dark", None], instruction="Find it")
    composed = mllm.encode(images=image_paths[0], text="make it dark", instruction="Find it")
    image_only = mllm.encode(images=image_paths[1], text=[None], instruction="Find it")
    torch.testing.assert_close(mixed, torch.cat([composed, image_only]), atol=1e-4, rtol=1e-4)
    empty = mllm.encode(images=image_paths[1], text=[""], instruction="Find it")
    assert not torch.allclose(empty, image_only, atol=1e-4)  # "" adds " \n" to the prompt


@pytest.mark.parametrize("mode", ["P", "RGBA"])
def test_images_are_resized_before_rgb_conversion(mllm, tmp_path, mode):
    import numpy as np

    rng = np.random.default_rng(1)
    rgba = Image.fromarray((rng.random((40, 30, 4)) * 255).astype(np.uint8), "RGBA")
    im = rgba.convert("RGB").convert("P") if mode == "P" else rgba
    path = tmp_path / f"{mode}.png"
    im.save(path)
    proc = mllm.hf_processor
    prompt = [candidate_prompt(None, True)]
    released = proc(images=[Image.open(path).resize((512, 512)).convert("RGB")], text=prompt,
                    return_tensors="pt", padding=True)["pixel_values"]
    converted_first = proc(images=[Image.open(path).convert("RGB").resize((512, 512))], text=prompt,
                           return_tensors="pt", padding=True)["pixel_values"]
    assert not torch.allclose(released, converted_first)  # the order matters for this file
    for source in (str(path), Image.open(path)):
        ours = mllm.processor()(images=[source], role="candidate")["pixel_values"]
        torch.testing.assert_close(ours, released)
