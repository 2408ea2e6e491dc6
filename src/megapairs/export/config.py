"""Configuration of the export stage (pairs + annotations -> MegaPairs-format triplet dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from megapairs.configbase import ConfigBase, ConfigError

FORMATS = ("parquet", "jsonl", "webdataset")
RESIZE_MODES = ("stretch", "pad", "crop")
IMAGE_FORMATS = ("jpg", "png")


@dataclass
class ExportConfig(ConfigBase):
    """How triplets are selected, split, and written.

    `num_hard_negatives` counts the query image itself, which is always `hns[0]` (as in the
    released MegaPairs data); 5 gives the query plus four mined negatives.
    """

    formats: list[str] = field(default_factory=lambda: ["parquet", "jsonl"])
    # None keeps the original pixels (re-encoded); an integer makes every image SIZE x SIZE.
    image_size: int | None = None
    # stretch: plain resize to a square (what the released 512x512 data did); pad: keep the aspect
    # ratio and pad with `pad_color`; crop: keep the aspect ratio and centre-crop.
    resize: str = "stretch"
    pad_color: list[int] = field(default_factory=lambda: [255, 255, 255])
    image_format: str = "jpg"
    jpeg_quality: int = 95
    num_hard_negatives: int = 5
    min_instructions: int = 1  # triplets with fewer usable instructions are dropped (and counted)
    include_failed: bool = False  # also export pairs whose annotation status is not "ok" (if they have instructions)
    exclude_writers: list[str] = field(default_factory=list)  # writer_used prefixes to drop, e.g. ["template:"]
    val_fraction: float = 0.1
    seed: int = 0
    shuffle: bool = True  # seeded order within each split (else: query id, pair rank)
    shard_size: int = 1000  # triplets per output shard
    # Presentation only (not hashed): how much the card and the HTML preview show.
    card_samples: int = 4
    preview_count: int = 24

    NOT_HASHED: ClassVar[tuple[str, ...]] = ("card_samples", "preview_count")

    def validate(self) -> None:
        w = self.where
        if not self.formats:
            raise ConfigError(f"{w}.formats must name at least one of {', '.join(FORMATS)}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"{w}.formats: unknown {bad}; choose from {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ConfigError(f"{w}.formats lists a format twice: {self.formats}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"{w}.image_size must be >= 8 or null (original size), got {self.image_size}")
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"{w}.resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if len(self.pad_color) != 3 or not all(0 <= c <= 255 for c in self.pad_color):
            raise ConfigError(f"{w}.pad_color must be three integers in 0..255, got {self.pad_color}")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"{w}.image_format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"{w}.jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.num_hard_negatives < 1:
            raise ConfigError(f"{w}.num_hard_negatives must be >= 1 (hns[0] is the query image itself)")
        if self.min_instructions < 1:
            raise ConfigError(f"{w}.min_instructions must be >= 1, got {self.min_instructions}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"{w}.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_size < 1:
            raise ConfigError(f"{w}.shard_size must be >= 1, got {self.shard_size}")
        if self.card_samples < 0 or self.preview_count < 0:
            raise ConfigError(f"{w}.card_samples and {w}.preview_count must be >= 0")

    @property
    def image_ext(self) -> str:
        return self.image_format
