"""Upload decoding is bounded: a pixel limit sized for search (413 from the header, nothing decoded)
and a limit on how many queries hold decoded pixels at once, so RSS stays flat under concurrent
large uploads. The memory test runs a real uvicorn server in a child process on 127.0.0.1 and
reads its peak RSS (VmHWM) from /proc."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from megapairs.search.server import DEFAULT_MAX_PIXELS, create_app  # noqa: E402
from tests.search.webdriver import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LARGE = (6000, 5000)  # 30 Mpx: under the search limit, ~90 MB as RGB
SERVER = """
import sys, uvicorn
from megapairs.search.server import create_app
from tests.search.searchtoy import ToyClipRetriever
app = create_app(sys.argv[1], ToyClipRetriever(seed=0), max_upload_bytes=8 * 1024 * 1024, decode_slots=2)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", lifespan="off")
"""


def png(size: tuple[int, int], seed: int = 0) -> bytes:
    """A PNG of `size` pixels that compresses to a few hundred KB (a flat picture with stripes)."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :, seed % 3] = 200
    a[:: 97, :, :] = 40
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@pytest.fixture(scope="module")
def large_png() -> bytes:
    return png(LARGE)


def test_pixel_limit_is_sized_for_search(built_index, toy):
    assert DEFAULT_MAX_PIXELS <= 40_000_000
    bomb = png((9000, 9000))  # 81 Mpx: under PIL's default limit (89 Mpx), far over the search one
    assert len(bomb) < 2 * 1024 * 1024
    client = TestClient(create_app(built_index, toy, max_upload_bytes=4 * 1024 * 1024))
    r = client.post("/api/search", files={"image": ("huge.png", bomb, "image/png")}, data={"k": "3"})
    assert r.status_code == 413, r.text
    assert "too many pixels" in r.json()["detail"] and "up to 40 megapixels" in r.json()["detail"]
    assert client.get("/api/info").json()["max_pixels"] == DEFAULT_MAX_PIXELS
    small = png((64, 48))
    assert client.post("/api/search", files={"image": ("ok.png", small, "image/png")}).status_code == 200


def test_decode_waits_for_a_slot_then_503(built_index, toy, monkeypatch):
    """With every slot held, an image query waits and then gets 503; text-only queries still run."""
    import asyncio

    import megapairs.search.server as server

    held = []
    real = asyncio.Semaphore

    def one_slot_taken(n):  # the app's semaphore, with its only slot already taken
        sem = real(n)
        held.append(sem)
        sem._value = 0
        return sem

    monkeypatch.setattr(server.asyncio, "Semaphore", one_slot_taken)
    client = TestClient(create_app(built_index, toy, decode_slots=1, decode_wait_s=0.2))
    r = client.post("/api/search", files={"image": ("q.png", png((40, 40)), "image/png")})
    assert r.status_code == 503 and "busy" in r.json()["detail"] and r.headers["retry-after"] == "5"
    assert client.post("/api/search", data={"text": "a red circle"}).status_code == 200
    assert held


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_memory_flat_under_8_concurrent_large_uploads(built_index, large_png, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(built_index), str(port)], cwd=ROOT, env=env,
                            stderr=open(tmp_path / "server.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end or proc.poll() is not None:
                raise AssertionError("server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.2)

        def post(i: int) -> int:
            r = httpx.post(base + "/api/search", files={"image": (f"q{i}.png", large_png, "image/png")},
                           data={"k": "3"}, timeout=120)
            return r.status_code

        assert post(0) == 200  # one large upload: the footprint of a single decode
        one = _hwm_kib(proc.pid)
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(post, range(1, 9)))
        assert codes == [200] * 8
        eight = _hwm_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(20)
    image_kib = LARGE[0] * LARGE[1] * 3 // 1024  # one decoded RGB picture
    growth = eight - one
    # Two slots: at most one more decoded picture (plus its resize buffers) than a single query;
    # unbounded, eight pictures are decoded at once (about 7 x image_kib more).
    assert growth < 2.5 * image_kib, f"peak RSS grew by {growth} KiB for 8 uploads (one picture: {image_kib} KiB)"
