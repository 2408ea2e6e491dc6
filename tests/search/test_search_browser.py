"""The search page in a real headless Chromium against a live uvicorn server on 127.0.0.1.

Skipped (not failed) where /usr/bin/chromium or /usr/bin/chromedriver is missing.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from megapairs.search.server import create_app  # noqa: E402
from tests.search.webdriver import ChromeDriver, free_port  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LIMIT = 64 * 1024
needs_browser = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                   reason="needs /usr/bin/chromium and /usr/bin/chromedriver")


@pytest.fixture(scope="module")
def server(built_index, toy):
    """A live uvicorn server in a thread; yields its base URL."""
    app = create_app(built_index, toy, max_upload_bytes=LIMIT)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > end or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver")
    profile = tmp_path_factory.mktemp("chromium") / "profile"
    with ChromeDriver(str(CHROMEDRIVER), str(CHROMIUM), profile) as b:
        yield b


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """GET with the request target sent exactly as given (no client-side path normalisation)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_live_server_never_serves_paths(server, gallery_dir):
    (gallery_dir.parent / "secret.txt").write_text("top secret")
    for target in ["/image/../../../../etc/passwd", "/image/..%2F..%2Fetc%2Fpasswd", "/image/../secret.txt",
                   "/image/%2e%2e%2fsecret.txt", f"/image/{gallery_dir}/img001.png", "/static/../server.py",
                   "/static/..%2Findex.py", "/image/" + "a" * 5000]:
        status, body = raw_get(server, target)
        assert status in (400, 404), (target, status)
        assert b"top secret" not in body and b"root:" not in body and b"import" not in body


def results(browser) -> list:
    return browser.find_all("#results img.hit")


def result_ids(browser) -> list[str]:
    return browser.run("return [...document.querySelectorAll('#results img.hit')].map(i => i.dataset.id);")


def error_text(browser) -> str:
    return browser.run("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;")


def loaded_images(browser) -> int:
    return browser.run("return [...document.querySelectorAll('#results img.hit')]"
                       ".filter(i => i.complete && i.naturalWidth > 0).length;")


@needs_browser
def test_upload_and_instruction_show_pictures(server, browser, gallery_dir, tmp_path):
    browser.get(server + "/")
    browser.wait(lambda: "12 gallery images" in browser.find("#info").text, what="index info")
    browser.wait(lambda: len(browser.find_all("#gallery img")) == 12, what="gallery thumbnails")

    query = sorted(gallery_dir.iterdir())[4]
    browser.find("#file").send_keys(str(query))
    browser.find("#text").send_keys("make it red")
    browser.run("document.getElementById('k').value = '5';")
    browser.find("#search").click()
    browser.wait(lambda: len(results(browser)) == 5, what="5 result pictures")
    browser.wait(lambda: loaded_images(browser) == 5, what="result pictures to load")
    captions = browser.run("return [...document.querySelectorAll('#results .score')].map(e => e.textContent);")
    assert [c.split(" · ")[0] for c in captions] == ["#1", "#2", "#3", "#4", "#5"]
    scores = [float(c.split(" · ")[1]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    assert error_text(browser) == ""

    # picking a gallery picture as the query instead
    browser.find("#clear").click()
    browser.find_all("#gallery button.pick")[7].click()
    picked = browser.run("return document.querySelector('#gallery button.pick.selected').dataset.id;")
    browser.run("document.getElementById('results').replaceChildren();")
    browser.find("#search").click()
    ids = browser.wait(lambda: result_ids(browser) if len(result_ids(browser)) == 5 else None,
                       what="gallery-query results")
    assert picked not in ids  # the query picture itself is left out


@needs_browser
def test_bad_uploads_show_clear_errors(server, browser, tmp_path):
    browser.get(server + "/")
    browser.wait(lambda: "uploads up to" in browser.find("#info").text, what="index info")

    fake = tmp_path / "notes.png"
    fake.write_bytes(b"this is a text file with an image name")
    browser.find("#file").send_keys(str(fake))
    browser.find("#search").click()
    msg = browser.wait(lambda: "not an image" in error_text(browser) and error_text(browser),
                       what="the not-an-image message")
    assert "JPEG, PNG" in msg and not results(browser)

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * (3 * LIMIT))
    browser.find("#file").send_keys(str(big))  # refused in the page, before any upload
    msg = browser.wait(lambda: "big.png" in error_text(browser) and error_text(browser), what="the size message")
    assert "limited to 0.06 MB" in msg

    # the same file with the page's check switched off: the server's 413 is shown, not a network error
    browser.run("window.megapairsSkipClientChecks = true;")
    browser.find("#file").send_keys(str(big))
    browser.find("#search").click()
    msg = browser.wait(lambda: "too large" in error_text(browser) and error_text(browser),
                       what="the server's 413 message")
    assert "0.0625 MB" in msg and not results(browser)
