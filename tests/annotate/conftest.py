"""Fixtures for the annotation tests: a real OpenAI-compatible test server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from megapairs.annotate.llamacpp import free_port

SERVER = Path(__file__).with_name("fake_openai_server.py")


class FakeServer:
    def __init__(self, log: Path, port: int | None = None, die_after: int | None = None) -> None:
        self.log = log
        self.port = port or free_port()
        self.die_after = die_after
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeServer":
        cmd = [sys.executable, str(SERVER), "--port", str(self.port), "--log", str(self.log)]
        if self.die_after is not None:
            cmd += ["--die-after", str(self.die_after)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "test server exited during start"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("test server did not start")

    def control(self, **kw: Any) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/control", json=kw, timeout=5).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def reset_log(self) -> None:
        self.log.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a test server: no graceful shutdown (a "hang" request would delay it)
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    server = FakeServer(tmp_path_factory.mktemp("fake") / "requests.jsonl").start()
    yield server
    server.stop()


@pytest.fixture()
def server(fake_server: FakeServer) -> Iterator[FakeServer]:
    """The shared server with a clean log and no pending script."""
    fake_server.control(script=[], die_after=None, delay=0.0)
    fake_server.reset_log()
    yield fake_server


@pytest.fixture()
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[FakeServer] = []

    def make(**kw: Any) -> FakeServer:
        s = FakeServer(tmp_path / f"requests-{len(started)}.jsonl", **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
