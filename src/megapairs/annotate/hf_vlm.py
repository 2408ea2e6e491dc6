"""`hf-vlm:PATH_OR_NAME`: a local transformers image-text-to-text model (AutoProcessor +
AutoModelForImageTextToText). Generation runs in a worker thread, one request at a time; set
HF_HUB_OFFLINE=1 to forbid any hub access (a local folder then needs nothing else)."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

from megapairs.annotate.llm import GENERATORS, BackendUnavailable, GenOptions, GenRequest, GenResult, Generator
from megapairs.registry import needs_argument


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if s and i >= 0:
            cut = min(cut, i)
    return text[:cut]


class HFVLMGenerator:
    supports_images = True

    def __init__(self, name: str, options: GenOptions) -> None:
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:  # pragma: no cover - torch and transformers are core dependencies
            raise BackendUnavailable(f"hf-vlm needs torch and transformers: {e}") from e
        self.spec = f"hf-vlm:{name}"
        self.model_id = self.spec
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(name)
            self.model = AutoModelForImageTextToText.from_pretrained(name, dtype=dtype).to(self.device).eval()
        except OSError as e:
            raise BackendUnavailable(f"hf-vlm: cannot load {name!r} ({e})") from e
        self._lock = threading.Lock()

    def _inputs(self, req: GenRequest) -> Any:
        from PIL import Image

        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in req.images]
        labels = list(req.image_labels) + [""] * (len(images) - len(req.image_labels))
        if getattr(self.processor, "chat_template", None):
            content: list[dict[str, str]] = []
            for label in labels:
                if label:
                    content.append({"type": "text", "text": label})
                content.append({"type": "image"})
            content.append({"type": "text", "text": req.prompt})
            text = self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                      add_generation_prompt=True)
        else:
            token = getattr(self.processor, "image_token", "<image>")
            text = "".join(f"{label}\n{token}\n" for label in labels) + req.prompt
        kwargs: dict[str, Any] = {"text": text, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        return self.processor(**kwargs).to(self.device)

    def _generate_sync(self, req: GenRequest) -> GenResult:
        import torch

        with self._lock:
            inputs = self._inputs(req)
            if req.seed is not None:
                torch.manual_seed(req.seed)
            sample = req.temperature > 0
            gen_kwargs: dict[str, Any] = {"max_new_tokens": req.max_tokens, "do_sample": sample}
            if sample:
                gen_kwargs.update(temperature=req.temperature, top_p=req.top_p)
            with torch.inference_mode():
                out = self.model.generate(**inputs, **gen_kwargs)
            n_prompt = int(inputs["input_ids"].shape[1])
            new = out[0, n_prompt:]
            text = self.processor.decode(new, skip_special_tokens=True)
        return GenResult(text=_cut_at_stop(text, req.stop), prompt_tokens=n_prompt,
                         completion_tokens=int(new.shape[0]), finish_reason="stop")

    async def generate(self, request: GenRequest) -> GenResult:
        return await asyncio.to_thread(self._generate_sync, request)

    def close(self) -> None:
        self.model = None


@GENERATORS.register("hf-vlm", check=needs_argument("hf-vlm", "Qwen/Qwen2-VL-2B-Instruct"))
def _hf_vlm(arg: str, options: GenOptions) -> Generator:
    return HFVLMGenerator(arg, options)
