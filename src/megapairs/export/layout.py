"""The on-disk layout of an exported dataset, and how images are prepared for it.

    <dataset>/
      README.md              dataset card (generated)
      preview.html           triplets as pictures (generated)
      .megapairs/manifest.json  counts, drop reasons, models, split policy, schema (+ lineage, markers)
      images/ab/<id>.jpg     every image once, named by its corpus id (content hash)
      train/part-00000.parquet            the Parquet shards: each split folder is a plain Parquet dataset
      validation/part-00000.parquet
      jsonl/train/part-00000.jsonl        the same rows as JSON lines (formats: jsonl)
      webdataset/train/part-00000.tar     ... and as WebDataset samples with pixels (formats: webdataset)
      assets/                card figures
      _plan/                 the frozen plan (triplets per shard, image owners); safe to delete after

Paths inside rows are relative to <dataset>, with forward slashes. Only Parquet sits in the split
folders, so `pq.read_table(<dataset>/train)`, `pyarrow.dataset` and `datasets.load_dataset(<dataset>)`
read them as they are (a Hugging Face dataset repository layout; the card's YAML names the files).
Exports before 0.3 kept .jsonl and .tar beside the Parquet shards; every reader still accepts that.
"""

from __future__ import annotations

import io

from PIL import Image

from megapairs.export.config import ExportConfig

SPLITS = ("train", "validation")
IMAGES_DIR = "images"
PLAN_DIR = "_plan"
ASSETS_DIR = "assets"
CARD = "README.md"
PREVIEW = "preview.html"


def image_relpath(image_id: str, ext: str) -> str:
    return f"{IMAGES_DIR}/{image_id[:2]}/{image_id}.{ext}"


# Where each format's shards live, relative to the dataset folder ("" = the split folder itself).
FORMAT_DIRS = {".parquet": "", ".jsonl": "jsonl", ".tar": "webdataset"}


def split_dir(split: str, suffix: str) -> str:
    prefix = FORMAT_DIRS[suffix]
    return f"{prefix}/{split}" if prefix else split


def shard_relpath(split: str, part: int, suffix: str) -> str:
    return f"{split_dir(split, suffix)}/part-{part:05d}{suffix}"


def fit_image(img: Image.Image, config: ExportConfig) -> Image.Image:
    """Apply image_size / resize to an RGB image."""
    size = config.image_size
    if size is None:
        return img
    if config.resize == "stretch":
        return img.resize((size, size), Image.Resampling.BICUBIC)
    w, h = img.size
    if config.resize == "pad":
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (size, size), tuple(config.pad_color))
        canvas.paste(img.resize((nw, nh), Image.Resampling.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
        return canvas
    scale = size / min(w, h)  # crop
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def encode_image(img: Image.Image, config: ExportConfig) -> bytes:
    """RGB image -> bytes in the export format (deterministic for the same pixels and settings)."""
    buf = io.BytesIO()
    img = fit_image(img.convert("RGB"), config)
    if config.image_format == "jpg":
        img.save(buf, format="JPEG", quality=config.jpeg_quality)
    else:
        img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
