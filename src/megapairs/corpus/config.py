"""Configuration of the ingest stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from megapairs.configbase import ConfigBase, ConfigError


@dataclass
class IngestConfig(ConfigBase):
    # A folder (img2dataset layout: x.jpg + x.txt/x.json), a .parquet/.jsonl table, a .tar file or
    # a folder of .tar shards (WebDataset), `openclipart` (Debian's openclipart-svg), `samples`
    # (photos bundled with scikit-image / scikit-learn), or `demo` (openclipart, else samples).
    source: str = "demo"
    image_column: str = "image"  # tables: a path (relative to the table) or image bytes
    caption_column: str = "caption"
    limit: int | None = None  # take at most this many items, spread evenly over the source
    shard_size: int = 256
    exclude: list[str] = field(default_factory=list)  # files listing image ids or paths to keep out
    max_pixels: int = 89_478_485
    svg_render_size: int = 256
    NOT_HASHED = ()

    def validate(self) -> None:
        if self.shard_size < 1:
            raise ConfigError(f"{self.where}.shard_size must be >= 1, got {self.shard_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{self.where}.limit must be >= 1 or null, got {self.limit}")
        if self.svg_render_size < 16:
            raise ConfigError(f"{self.where}.svg_render_size must be >= 16")
