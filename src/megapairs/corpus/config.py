"""Configuration of the ingest stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from megapairs.configbase import ConfigBase, ConfigError


@dataclass
class IngestConfig(ConfigBase):
    # A folder (img2dataset layout: x.jpg + x.txt/x.json), a .parquet/.jsonl table, a .tar file or
    # a folder of .tar shards (WebDataset), `openclipart` (Debian's openclipart-svg), `samples`
    # (photos bundled with scikit-image / scikit-learn), `demo` (openclipart, else samples), or
    # `icons` / `icons:THEME,THEME/CONTEXT` (installed freedesktop icon themes). Several sources mix:
    # a list (all of each), or a mapping source -> how many to take from it (null: all), in order.
    source: str | list[str] | dict[str, int | None] = "demo"
    image_column: str = "image"  # tables: a path (relative to the table) or image bytes
    caption_column: str = "caption"
    limit: int | None = None  # take at most this many items, spread evenly over the source
    shard_size: int = 256
    # Files listing what to keep out: paths (absolute or package-relative), content ids, sha1/sha256.
    exclude: str | list[str] = field(default_factory=list)  # one file or a list of files
    max_pixels: int = 89_478_485
    svg_render_size: int = 256
    NOT_HASHED = ()

    def validate(self) -> None:
        if isinstance(self.exclude, str):
            self.exclude = [self.exclude] if self.exclude.strip() else []
        parts = [self.source] if isinstance(self.source, str) else list(self.source)
        if not parts or any(not isinstance(s, str) or not s.strip() for s in parts):
            raise ConfigError(f"{self.where}.source must name at least one source, got {self.source!r}")
        if isinstance(self.source, dict):
            bad = {k: v for k, v in self.source.items() if v is not None and v < 1}
            if bad:
                raise ConfigError(f"{self.where}.source: per-source counts must be >= 1 or null, got {bad}")
        if self.shard_size < 1:
            raise ConfigError(f"{self.where}.shard_size must be >= 1, got {self.shard_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{self.where}.limit must be >= 1 or null, got {self.limit}")
        if self.svg_render_size < 16:
            raise ConfigError(f"{self.where}.svg_render_size must be >= 16")
