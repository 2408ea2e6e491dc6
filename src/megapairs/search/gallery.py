"""What a gallery is made of: listing items from a folder, a path list or a corpus artifact, and
reading one item's picture.

An item has a stable `id` (sha256 of the image bytes, 32 hex, as in the corpus artifact), a `path`
(what users see: a file path or corpus uri) and a `src` (where the pixels are read from; differs
from `path` only for corpus rows whose picture is a stored render, e.g. SVG -> PNG).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image

from megapairs.corpus.images import IMAGE_EXT, DecodeError, load_image, read_bytes

# Formats a browser shows directly and that cannot carry scripts (SVG is rendered, never served raw).
WEB_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


@dataclass(frozen=True)
class GalleryItem:
    path: str
    src: str
    id: str | None = None  # known for corpus rows; computed from the bytes otherwise
    caption: str | None = None


@dataclass(frozen=True)
class Gallery:
    items: list[GalleryItem]
    kind: str  # paths | folder | list | corpus
    source: str  # what the user passed, for index.json


def content_id(data: bytes) -> str:
    """The corpus' id of an image: sha256 of its bytes, first 32 hex digits."""
    return hashlib.sha256(data).hexdigest()[:32]


def is_corpus(folder: Path) -> bool:
    import json

    from megapairs.artifacts import manifest_file

    manifest = manifest_file(folder)
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("kind") == "corpus"
    except ValueError:
        return False


def list_gallery(gallery: str | Path | Sequence[str | Path]) -> Gallery:
    """A gallery from a list of image paths, a folder of images (recursive), a .txt file listing
    image paths (one a line, relative to the file), or a corpus artifact folder (rows with status ok)."""
    if not isinstance(gallery, (str, Path)):
        paths = [str(Path(p).expanduser().resolve()) for p in gallery]
        return Gallery([GalleryItem(p, p) for p in paths], "paths", f"{len(paths)} paths")
    root = Path(gallery).expanduser().resolve()
    if root.is_dir() and is_corpus(root):
        return Gallery(_corpus_items(root), "corpus", str(root))
    if root.is_dir():
        files = sorted(str(p) for p in root.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXT and not _hidden(p, root))
        return Gallery([GalleryItem(p, p) for p in files], "folder", str(root))
    if root.is_file() and root.suffix.lower() in {".txt", ".lst"}:
        items = []
        for line in root.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = str((root.parent / Path(line).expanduser()).resolve())
                items.append(GalleryItem(p, p))
        return Gallery(items, "list", str(root))
    if not root.exists():
        raise FileNotFoundError(f"gallery {gallery} does not exist")
    raise ValueError(
        f"gallery {gallery} is not a folder of images, a corpus artifact folder or a .txt list of image paths"
    )


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _corpus_items(root: Path) -> list[GalleryItem]:
    import pyarrow.compute as pc

    from megapairs.artifacts import open_complete

    art = open_complete(root)
    items: list[GalleryItem] = []
    for shard in art.shard_indices():
        table = art.read_shard(shard, columns=["id", "uri", "caption", "status"])
        has_render = pc.is_valid(art.read_shard(shard, columns=["image_bytes"]).column("image_bytes"))
        shard_path = art.shard_path(shard)
        for row, (i, uri, cap, status, rendered) in enumerate(zip(
                *(table.column(c).to_pylist() for c in ("id", "uri", "caption", "status")),
                has_render.to_pylist())):
            if status != "ok":
                continue
            src = f"parquet:{shard_path}:{row}#image_bytes" if rendered else uri
            items.append(GalleryItem(uri, src, i, cap))
    return items


def read_item(src: str) -> tuple[bytes, Image.Image]:
    """(raw bytes, RGB picture) of an item; raises DecodeError / OSError like the corpus does."""
    data = read_bytes(src)
    return data, load_image({"uri": src, "image_bytes": data})


def web_bytes(src: str, size: int | None = None) -> tuple[bytes, str]:
    """Bytes a browser can show for an item, and their media type. JPEG/PNG/GIF/WebP files are
    passed through untouched; anything else (TIFF, BMP, SVG renders, ...) and every thumbnail
    request (`size`) is re-encoded."""
    import io

    data = read_bytes(src)
    if size is None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
        except Exception:  # SVG and friends: PIL cannot identify them
            fmt = None
        if fmt in WEB_FORMATS:
            return data, WEB_FORMATS[fmt]
    image = load_image({"uri": src, "image_bytes": data})
    out = io.BytesIO()
    if size is not None:
        image = image.copy()
        image.thumbnail((size, size))
        image.save(out, "JPEG", quality=85)
        return out.getvalue(), "image/jpeg"
    image.save(out, "PNG")
    return out.getvalue(), "image/png"


def status_of(error: Exception) -> str:
    if isinstance(error, DecodeError):
        return error.reason
    if isinstance(error, FileNotFoundError):
        return "missing"
    return "unreadable"


def chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
