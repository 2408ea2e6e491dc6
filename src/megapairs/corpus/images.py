"""Reading image bytes from a corpus uri and decoding them safely.

uri forms (what the corpus artifact stores; pixels are never copied except SVG renders):
- `/abs/path/x.jpg`                      a file
- `tar:/abs/shard.tar:OFFSET:SIZE#member` a WebDataset member, read by offset
- `parquet:/abs/table.parquet:ROW#column` a bytes cell of a table
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile, UnidentifiedImageError

SVG_EXT = {".svg", ".svgz"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} | SVG_EXT
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default bomb limit (~ 0.25 GB RGB)


class DecodeError(Exception):
    """An item that cannot become an RGB image. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Decoded:
    image: Image.Image  # RGB
    width: int
    height: int
    format: str
    mode: str  # the original mode
    note: str  # conversions applied ("" when none)


def read_bytes(uri: str) -> bytes:
    if uri.startswith("tar:"):
        rest = uri[4:].split("#", 1)[0]
        path, offset, size = rest.rsplit(":", 2)
        with open(path, "rb") as f:
            f.seek(int(offset))
            return f.read(int(size))
    if uri.startswith("parquet:"):
        rest, column = uri[8:].split("#", 1)
        path, row = rest.rsplit(":", 1)
        return _parquet_cell(path, int(row), column)
    return Path(uri).read_bytes()


def _parquet_cell(path: str, row: int, column: str) -> bytes:
    pf, starts = _parquet_index(path)
    rg = max(i for i, s in enumerate(starts) if s <= row)
    table = pf.read_row_group(rg, columns=[column])
    value = table.column(column)[row - starts[rg]].as_py()
    if isinstance(value, dict):  # datasets' Image() struct {"bytes", "path"}
        value = value.get("bytes")
    if value is None:
        raise FileNotFoundError(f"{path} row {row}: column {column!r} is empty")
    return value


@functools.lru_cache(maxsize=64)
def _parquet_index(path: str):
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    starts, n = [], 0
    for i in range(pf.num_row_groups):
        starts.append(n)
        n += pf.metadata.row_group(i).num_rows
    return pf, starts


def looks_like_svg(data: bytes, name: str = "") -> bool:
    if Path(name).suffix.lower() in SVG_EXT:
        return True
    head = data[:512].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower())


def render_svg(data: bytes, size: int) -> bytes:
    """SVG -> PNG bytes, longest side `size`, on a white background."""
    try:
        import cairosvg
    except ImportError as e:
        raise DecodeError("missing_dependency", f"SVG needs cairosvg: pip install 'megapairs[offline]' ({e})")
    try:
        png = cairosvg.svg2png(bytestring=data, output_width=size, background_color="white")
        img = Image.open(io.BytesIO(png))
        if max(img.size) > size * 1.01:  # very tall drawings: bound the longest side instead
            png = cairosvg.svg2png(bytestring=data, output_height=size, background_color="white")
        return png
    except Exception as e:
        raise DecodeError("bad_svg", f"cannot render SVG: {type(e).__name__}: {e}") from None


def decode(data: bytes, name: str = "", max_pixels: int = DEFAULT_MAX_PIXELS, draft: int | None = None) -> Decoded:
    """Bytes -> RGB image, or DecodeError with a reason: empty_file, not_an_image, truncated,
    decompression_bomb, unreadable. Odd modes (CMYK, 16-bit, alpha, palette, animated) are
    converted and reported in `note`. `draft`: a JPEG decodes at the smallest DCT scale (1/2, 1/4,
    1/8) whose sides stay >= `draft` pixels (libjpeg scales while decoding: far less work for big
    photos; the pixels differ slightly from a full decode then resize). Other formats ignore it."""
    if not data:
        raise DecodeError("empty_file", "zero bytes")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt, mode = img.format or "?", img.mode
            if img.width * img.height > max_pixels:
                raise Image.DecompressionBombError(f"{img.width}x{img.height} exceeds {max_pixels} pixels")
            frames = getattr(img, "n_frames", 1)
            if draft:
                img.draft(None, (draft, draft))  # a no-op for non-JPEG; width/height above are the original's
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError("decompression_bomb", str(e)) from None
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        reason = "truncated" if "truncated" in msg.lower() or "broken data stream" in msg.lower() else "unreadable"
        raise DecodeError(reason, f"{type(e).__name__}: {msg}") from None
    notes = []
    if frames > 1:
        notes.append(f"animated ({frames} frames): first frame used")
    rgb = _to_rgb(img, notes)
    return Decoded(rgb, rgb.width, rgb.height, fmt, mode, "; ".join(notes))


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        notes.append(f"{mode} rescaled to 8-bit")
        return Image.fromarray(a.astype("uint8")).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "P+alpha"
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        notes.append(f"{mode} alpha composited on white")
        return background
    notes.append(f"{mode} converted to RGB")
    return img.convert("RGB")


def load_image(row: dict[str, Any], draft: int | None = None) -> Image.Image:
    """RGB image of a corpus row (uses the stored SVG render when there is one). `draft`: see `decode`."""
    data = row.get("image_bytes")  # a stored raster render (SVG sources)
    if data is None:
        data = read_bytes(row["uri"])
        if looks_like_svg(data, row.get("uri", "")):
            data = render_svg(data, 256)
    return decode(data, row.get("uri", ""), draft=draft).image
