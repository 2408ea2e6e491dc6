"""The web API through FastAPI's TestClient: search, upload limits, bad files, gallery-only serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from megapairs.search import GalleryIndex  # noqa: E402
from megapairs.search.server import MULTIPART_SLACK, create_app  # noqa: E402

LIMIT = 40 * 1024


@pytest.fixture(scope="module")
def client(built_index, toy):
    with TestClient(create_app(built_index, toy, max_upload_bytes=LIMIT)) as c:
        yield c


@pytest.fixture(scope="module")
def idx(built_index, toy):
    return GalleryIndex.load(built_index, toy)


def png_bytes(seed: int = 0, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_page_and_info(client, idx):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="file"' in r.text and "/static/app.js" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    info = client.get("/api/info").json()
    assert info["count"] == 12 and info["max_upload_bytes"] == LIMIT and info["retriever"] == "toyclip:0"
    page = client.get("/api/gallery", params={"offset": 10, "limit": 5}).json()
    assert page["total"] == 12 and [i["id"] for i in page["items"]] == idx.ids[10:]
    assert page["items"][0]["url"] == f"/image/{idx.ids[10]}"


def test_search_with_upload_and_text(client, idx, gallery_dir, toy):
    query = sorted(gallery_dir.iterdir())[5]
    r = client.post("/api/search", files={"image": (query.name, query.read_bytes(), "image/png")},
                    data={"text": "make it red", "k": "4"})
    assert r.status_code == 200, r.text
    body = r.json()
    want = idx.search(images=str(query), text="make it red", k=5)[0]
    want = [h for h in want if h.path != str(query)][:4]  # the query image itself is left out
    assert [h["id"] for h in body["hits"]] == [h.id for h in want]
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4]
    np.testing.assert_allclose([h["score"] for h in body["hits"]], [h.score for h in want], atol=1e-4)
    assert all(h["url"] == f"/image/{h['id']}" for h in body["hits"])
    assert body["query"]["image"] == {"upload": query.name} and body["query"]["text"] == "make it red"


def test_search_with_gallery_image_or_text_only(client, idx):
    r = client.post("/api/search", data={"gallery_id": idx.ids[3], "k": "3"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) == 3 and idx.ids[3] not in [h["id"] for h in hits]
    assert r.json()["query"]["image"]["id"] == idx.ids[3]
    r = client.post("/api/search", data={"text": "a blue square"})
    assert r.status_code == 200 and len(r.json()["hits"]) == 10
    assert client.post("/api/search", data={"gallery_id": "f" * 32}).status_code == 404


@pytest.mark.parametrize("data, status, words", [
    ({}, 400, "a text instruction, or both"),
    ({"text": "   "}, 400, "a text instruction, or both"),
    ({"text": "red", "k": "0"}, 400, "between 1 and 100"),
    ({"text": "red", "k": "ten"}, 400, "whole number"),
])
def test_bad_requests(client, data, status, words):
    r = client.post("/api/search", data=data)
    assert r.status_code == status and words in r.json()["detail"]


def test_oversize_upload_413(client):
    big = png_bytes(size=400)  # random pixels: ~470 KB, far over the 40 KB limit
    assert len(big) > LIMIT + MULTIPART_SLACK
    r = client.post("/api/search", files={"image": ("big.png", big, "image/png")}, data={"text": "red"})
    assert r.status_code == 413
    assert "too large" in r.json()["detail"] and "0.0391 MB" in r.json()["detail"]
    # just over the limit: within the multipart slack, caught on the file part itself
    near = png_bytes(size=120)
    assert LIMIT < len(near) <= LIMIT + MULTIPART_SLACK
    r = client.post("/api/search", files={"image": ("near.png", near, "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_oversize_streamed_without_content_length(client):
    boundary = "megapairsboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def body():  # a generator body is sent chunked: the limit must hold while streaming
        yield head
        for _ in range(20):
            yield b"\x00" * 16384
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/search", content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]


@pytest.mark.parametrize("name, data, status, words", [
    ("notes.jpg", b"definitely not an image", 415, "not an image"),
    ("empty.png", b"", 415, "zero bytes"),
    ("", b"", 400, "a text instruction, or both"),  # what a browser sends when no file was chosen
    ("cut.png", png_bytes()[:300], 400, "damaged"),
])
def test_non_image_upload(client, name, data, status, words):
    r = client.post("/api/search", files={"image": (name, data, "image/png")})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_image_serving_is_gallery_only(client, idx, gallery_dir):
    png = next(r for r in range(len(idx)) if idx.paths[r].endswith(".png"))
    r = client.get(f"/image/{idx.ids[png]}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == open(idx.paths[png], "rb").read() and r.headers["x-content-type-options"] == "nosniff"
    thumb = client.get(f"/image/{idx.ids[png]}", params={"size": 20})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 20

    secret = gallery_dir.parent / "secret.txt"
    secret.write_text("top secret")
    (gallery_dir / "stray.png").write_bytes(png_bytes())  # in the folder, but not in the index
    attempts = [
        "/image/0123456789abcdef0123456789abcdef",
        "/image/..%2Fsecret.txt",
        "/image/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/image/%2e%2e/%2e%2e/etc/passwd",
        "/image/%2Fetc%2Fpasswd",
        f"/image/{idx.paths[png]}",
        f"/image/{str(gallery_dir / 'stray.png').replace('/', '%2F')}",
        "/image/stray.png",
        "/static/..%2Fserver.py",
        "/static/index.html",
        "/static/%2E%2E%2Fserver.py",
    ]
    for url in attempts:
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert b"top secret" not in r.content and b"root:" not in r.content
    # dot segments the client resolves itself land on other routes, never on a file
    assert client.get("/image/..").headers["content-type"].startswith("text/html")
    (gallery_dir / "stray.png").unlink()
