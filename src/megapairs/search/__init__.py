"""Search a gallery with composed queries (image + instruction), text or images.

    from megapairs.models.base import load_retriever
    from megapairs.search import GalleryIndex

    retriever = load_retriever("clip:/path/to/ckpt")
    idx = GalleryIndex.build("photos/", retriever, "runs/photos-index")   # or GalleryIndex.load(folder, retriever)
    hits = idx.search(images="q.jpg", text="make it red", k=10)[0]     # [Hit(path, id, score, rank), ...]

The CLI (`megapairs index | search | serve`) lives in `megapairs.search.cli`, the web demo in
`megapairs.search.server` (needs the `serve` extra).
"""

from megapairs.search.index import (
    GalleryIndex,
    Hit,
    IndexOptions,
    RetrieverMismatchError,
    SearchIndexError,
)

__all__ = ["GalleryIndex", "Hit", "IndexOptions", "RetrieverMismatchError", "SearchIndexError"]
