"""Configuration of the embed stage: one spec string per similarity view."""

from __future__ import annotations

from dataclasses import dataclass

from megapairs.configbase import ConfigBase, ConfigError

VIEW_MODALITY = {"image": "image", "visual": "image", "caption": "text"}


@dataclass
class EmbedConfig(ConfigBase):
    # The three views of heterogeneous KNN mining ("" disables a view):
    image: str = "offline:label-bridge"  # CLIP-like image encoder (visual-semantic relations)
    visual: str = "offline:efficientnet-lite0"  # DINO-like visual encoder (visual-pattern relations)
    caption: str = "offline:minilm"  # text encoder on the captions
    dtype: str = "float16"
    batch_size: int = 32
    device: str = "auto"
    decode_threads: int = 0  # image decoding threads; 0 = auto (cores - 1, at most 8)
    NOT_HASHED = ("batch_size", "device", "decode_threads")

    def validate(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"{self.where}.dtype must be float16 or float32, got {self.dtype!r}")
        if self.batch_size < 1:
            raise ConfigError(f"{self.where}.batch_size must be >= 1")
        if not self.views():
            raise ConfigError(f"{self.where}: at least one of image, visual, caption must name an encoder")

    def views(self) -> dict[str, str]:
        return {v: getattr(self, v) for v in VIEW_MODALITY if getattr(self, v)}
