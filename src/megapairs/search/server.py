"""A small web demo and JSON API over a gallery index (needs the `serve` extra: fastapi, uvicorn,
python-multipart).

    GET  /                 the search page (static/index.html)
    GET  /api/info         index size, retriever, upload limit
    GET  /api/gallery      gallery items to pick a query from (?offset=&limit=)
    POST /api/search       multipart: image (file, optional), gallery_id (optional), text (optional), k
    GET  /image/{id}       a gallery picture, looked up by id (?size=N for a thumbnail)

Only gallery pictures are ever served, found by id in the index; nothing in a request is used as a
path. SVG and other non-web formats are re-encoded, never passed through.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations
# (e.g. `request: Request`) at runtime, and Request is imported inside create_app.
import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from megapairs.corpus.images import DecodeError, decode
from megapairs.search.gallery import content_id, read_item, web_bytes
from megapairs.search.index import GalleryIndex

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
# A query image is shrunk to the model's input size anyway: 40 Mpx (~120 MB as RGB) covers any
# camera photo, while the corpus-side limit (89 Mpx) lets a 230 KB PNG cost ~0.9 GB per request.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_DECODE_SLOTS = 2  # queries holding a decoded image at once; others wait for a slot
DECODE_WAIT_S = 30.0  # a query waiting longer than this for a slot gets 503
MULTIPART_SLACK = 64 * 1024  # form fields and multipart headers around the image
MAX_K = 100
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB"


class UploadTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request to `path` whose body exceeds `limit` bytes gets 413 before it is
    parsed (by Content-Length when sent, else while streaming). The rest of an oversized body is
    read and discarded (up to `drain`), so browsers see the 413 instead of a reset connection."""

    def __init__(self, app, *, path: str, limit: int, message: str, drain: int = 256 * 1024 * 1024) -> None:
        self.app, self.path, self.limit, self.message, self.drain = app, path, limit, message, drain

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._drain(receive, 0)
            await self._reject(send)
            return
        seen = 0
        more = True  # whether the client still has body to send
        started = False

        async def limited_receive():
            nonlocal seen, more
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                more = message.get("more_body", False)
                if seen > self.limit:
                    raise UploadTooLarge()
            else:
                more = False
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except UploadTooLarge:
            if started:
                raise
            if more:
                await self._drain(receive, seen)
            await self._reject(send)

    async def _drain(self, receive, seen: int) -> None:
        """Read and drop the rest of the body (never past the end: that would wait for a disconnect)."""
        more = True
        while more and seen <= self.drain:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def _reject(self, send) -> None:
        import json

        body = json.dumps({"detail": self.message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(index_dir: str | Path, retriever: Any, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
               index: GalleryIndex | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
               decode_slots: int = DEFAULT_DECODE_SLOTS, decode_wait_s: float = DECODE_WAIT_S):
    """The FastAPI app for one index. `index` may be passed when already loaded (it must have been
    loaded with `retriever`).

    Memory per query is bounded: an upload over `max_pixels` gets 413 from its header, before any
    pixel is decoded, and at most `decode_slots` queries hold a decoded image (from decode until
    their embedding is computed); the rest wait up to `decode_wait_s`, then get 503."""
    try:
        from fastapi import FastAPI, HTTPException, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import FileResponse, Response
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"the search server needs the serve extra: pip install 'megapairs[serve]' ({e})") from None

    idx = index if index is not None else GalleryIndex.load(index_dir, retriever)
    if idx.retriever is None:
        idx.retriever = retriever
    encode_lock = threading.Lock()  # one model forward at a time; FAISS searches may overlap
    decode_slots = max(1, decode_slots)
    slots = asyncio.Semaphore(decode_slots)  # binds to the server's loop on first use
    # Image queries run in their own `decode_slots` threads, not in the shared pool: the allocator
    # keeps freed pixel buffers in per-thread arenas, so RSS grows with the threads that ever decoded.
    decode_pool = ThreadPoolExecutor(decode_slots, thread_name_prefix="decode")
    too_large = f"The image is too large: uploads are limited to {_mb(max_upload_bytes)}."

    app = FastAPI(title="megapairs search", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, path="/api/search", limit=max_upload_bytes + MULTIPART_SLACK, message=too_large)
    app.state.index = idx

    def gallery_entry(row: int) -> dict[str, Any]:
        return {"id": idx.ids[row], "name": Path(idx.paths[row]).name, "caption": idx.captions[row],
                "url": f"/image/{idx.ids[row]}"}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in STATIC_FILES:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name],
                            headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/api/info")
    def info():
        return {"count": len(idx), "dim": idx.dim, "retriever": idx.spec, "faiss": idx.meta["faiss"]["factory"],
                "max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels, "max_k": MAX_K}

    @app.get("/api/gallery")
    def gallery(offset: int = 0, limit: int = 48):
        offset, limit = max(0, offset), max(0, min(limit, 500))
        rows = range(offset, min(offset + limit, len(idx)))
        return {"total": len(idx), "offset": offset, "items": [gallery_entry(r) for r in rows]}

    @app.post("/api/search")
    async def search(request: Request):
        t0 = time.perf_counter()
        async with request.form(max_files=1, max_fields=10) as form:  # closes spooled uploads at the end
            upload = form.get("image")
            text = _field(form, "text")
            gallery_id = _field(form, "gallery_id") or None
            k = _parse_k(_field(form, "k"))
            data: bytes | None = None
            item = None
            exclude: list[str] = []
            query: dict[str, Any] = {"text": text or None, "k": k}
            if upload is not None and not isinstance(upload, str) and (upload.filename or upload.size):
                if gallery_id:
                    raise HTTPException(400, "Give either an uploaded image or a gallery image, not both.")
                data = await upload.read(max_upload_bytes + 1)
                if len(data) > max_upload_bytes:
                    raise HTTPException(413, too_large)
                exclude.append(content_id(data))
                query["image"] = {"upload": upload.filename or "upload"}
            elif gallery_id:
                item = idx.item(gallery_id)
                if item is None:
                    raise HTTPException(404, "No gallery image has that id.")
                exclude.append(item.id)
                query["image"] = gallery_entry(idx.row_of[item.id])
            name = (upload.filename or "upload") if data is not None else ""
        if data is None and item is None and not text:
            raise HTTPException(400, "Give a query image (upload one or pick one from the gallery), "
                                     "a text instruction, or both.")

        def embed() -> Any:
            """Decode (when there is an image) and encode; runs while holding a decode slot."""
            image = None
            if data is not None:
                image = _decode_upload(data, name, max_pixels)
            elif item is not None:
                try:
                    image = read_item(item.src)[1]
                except (OSError, DecodeError) as e:
                    raise HTTPException(410, f"That gallery image can no longer be read: {type(e).__name__}") from None
            with encode_lock:
                return idx.encode_query(images=image, text=text or None)

        if data is None and item is None:  # text only: no pixels to bound
            q = await run_in_threadpool(embed)
        else:
            try:
                await asyncio.wait_for(slots.acquire(), decode_wait_s)
            except asyncio.TimeoutError:
                raise HTTPException(503, "The server is busy with other image queries; try again in a moment.",
                                    headers={"Retry-After": "5"}) from None
            try:
                q = await asyncio.get_running_loop().run_in_executor(decode_pool, embed)
            finally:
                slots.release()
        hits = await run_in_threadpool(lambda: idx.search(vectors=q, k=k, exclude_ids=exclude)[0])
        return {"query": query, "took_ms": round((time.perf_counter() - t0) * 1000, 1),
                "hits": [{"rank": h.rank, "score": round(h.score, 5), **gallery_entry(idx.row_of[h.id])}
                         for h in hits]}

    @app.get("/image/{item_id}")
    def image(item_id: str, size: int | None = None):
        item = idx.item(item_id)
        if item is None:
            raise HTTPException(404, "No gallery image has that id.")
        if size is not None:
            size = max(16, min(size, 2048))
        try:
            data, media_type = web_bytes(item.src, size)
        except (OSError, DecodeError) as e:
            raise HTTPException(410, f"The gallery image can no longer be read: {type(e).__name__}") from None
        return Response(data, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    return app


def _field(form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _parse_k(value) -> int:
    from fastapi import HTTPException

    if value is None or value == "":
        return 10
    try:
        k = int(str(value))
    except ValueError:
        raise HTTPException(400, f"k must be a whole number, got {str(value)[:20]!r}.") from None
    if not 1 <= k <= MAX_K:
        raise HTTPException(400, f"k must be between 1 and {MAX_K}, got {k}.")
    return k


def _decode_upload(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    from fastapi import HTTPException

    try:
        return decode(data, name, max_pixels=max_pixels).image
    except DecodeError as e:
        if e.reason in ("not_an_image", "empty_file"):
            raise HTTPException(415, f"The uploaded file is not an image we can read "
                                     f"(JPEG, PNG, WebP, GIF, BMP, TIFF): {e}.") from None
        if e.reason == "decompression_bomb":
            raise HTTPException(413, f"The uploaded image has too many pixels: this server takes up to "
                                     f"{max_pixels / 1e6:.0f} megapixels; shrink it and try again ({e}).") from None
        raise HTTPException(400, f"The uploaded image is damaged or unreadable ({e.reason}): {e}.") from None
