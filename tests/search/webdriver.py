"""Just enough of the W3C WebDriver protocol, over httpx, to drive headless Chromium from tests.

    with ChromeDriver("/usr/bin/chromedriver", "/usr/bin/chromium", profile_dir) as browser:
        browser.get(url)
        browser.find("#file").send_keys("/path/to/image.png")
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import httpx

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,900"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriverError(RuntimeError):
    pass


class Element:
    def __init__(self, browser: "ChromeDriver", ref: str) -> None:
        self.browser, self.ref = browser, ref

    def _call(self, method: str, what: str, body: dict | None = None) -> Any:
        return self.browser.call(method, f"/element/{self.ref}/{what}", body)

    def click(self) -> None:
        self._call("POST", "click", {})

    def send_keys(self, text: str) -> None:
        self._call("POST", "value", {"text": text})

    def clear(self) -> None:
        self._call("POST", "clear", {})

    @property
    def text(self) -> str:
        return self._call("GET", "text")

    def prop(self, name: str) -> Any:
        return self._call("GET", f"property/{name}")


class ChromeDriver:
    def __init__(self, driver: str, binary: str, profile_dir: Path, log: Path | None = None) -> None:
        self.port = free_port()
        self.log = open(log or profile_dir.parent / "chromedriver.log", "wb")
        self.proc = subprocess.Popen([driver, f"--port={self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60, trust_env=False)
        self.session: str | None = None
        try:
            self._wait_ready()
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": binary, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"]},
            }}}
            self.session = self._request("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise WebDriverError(f"chromedriver exited with {self.proc.returncode}")
            try:
                if self.http.get("/status").json()["value"].get("ready"):
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise WebDriverError("chromedriver did not become ready")

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        r = self.http.request(method, path, json=body)
        value = r.json().get("value")
        if r.status_code >= 400:
            raise WebDriverError(f"{method} {path}: {r.status_code} {value}")
        return value

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        return self._request(method, f"/session/{self.session}{path}", body)

    # -- browser actions ------------------------------------------------------------------------
    def get(self, url: str) -> None:
        self.call("POST", "/url", {"url": url})

    def find_all(self, css: str) -> list[Element]:
        found = self.call("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, f[ELEMENT]) for f in found]

    def find(self, css: str) -> Element:
        found = self.find_all(css)
        if not found:
            raise WebDriverError(f"no element matches {css!r}")
        return found[0]

    def run(self, script: str, *args: Any) -> Any:
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, condition: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.session:
                self._request("DELETE", f"/session/{self.session}")
        except Exception:
            pass
        self.session = None
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> "ChromeDriver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
