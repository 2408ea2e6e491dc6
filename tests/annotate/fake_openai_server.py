"""A small OpenAI-compatible server for the annotation tests (run as a real uvicorn process).

It answers `/v1/chat/completions` and `/v1/completions` with deterministic text shaped like what
the annotation prompts ask for, and can be told (POST /control) to misbehave: a `script` of modes
consumed one per request (ok, 429, 500, 503, 400, malformed, nochoices, empty, refusal, hang,
badusage: valid JSON whose usage.prompt_tokens is a list, badparts: content parts whose text is a
number; for
line-mode prompts also const: the same answer whatever the seed, long: cut off by max_tokens), and
`die_after` N answered requests, after which the next request kills the process (SIGKILL).
GET /v1/models lists `models` (settable by /control; None answers 404, as a server without it).
Every request is appended to the --log file (JSON lines, fsynced) so a test can count requests
across a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

app = FastAPI()
# `models`: what GET /v1/models lists (the names the tests' specs use); None: no such endpoint (404).
MODELS = ["m", "base", "vlm", "instruct"]
STATE: dict[str, Any] = {"script": [], "die_after": None, "answered": 0, "log": None, "delay": 0.0,
                         "models": MODELS}


def _log(entry: dict[str, Any]) -> None:
    if STATE["log"]:
        with open(STATE["log"], "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _prompt_of(body: dict[str, Any]) -> tuple[str, int]:
    if "prompt" in body:
        return str(body["prompt"]), 0
    text, images = "", 0
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, str):
            text += c
        else:
            for part in c:
                if part.get("type") == "text":
                    text += part["text"] + "\n"
                elif part.get("type") == "image_url":
                    assert part["image_url"]["url"].startswith("data:image/png;base64,")
                    images += 1
    return text, images


def _line_reply(prompt: str, seed: Any, mode: str) -> str:
    """Line mode: the prompt ends with "Instruction: <opener>"; answer about its `Target:` line."""
    target = re.findall(r"^Target: (.*)$", prompt, flags=re.MULTILINE)[-1].strip()
    if mode == "const":
        return f" {target}."
    if mode == "long":
        return " " + " ".join([target] * 12)
    return f" {target}, take {seed}."


def _reply(prompt: str, chat: bool) -> str:
    if prompt.rstrip().endswith("Requests: ["):
        note = prompt.rstrip().splitlines()[-2]
        m = re.search(r"Target only:\s*(.*?)\.?$", note)
        target = (m.group(1) if m else "something new").strip()
        items = [f"Show it with {target}", f"Same kind of thing, but {target}", f"Find one where {target}"]
        text = json.dumps(items)
        return text if chat else text[1:]
    if prompt.rstrip().endswith("Note: Shared:"):
        cap = re.findall(r"Target caption: (.*)", prompt)[-1]
        src = re.findall(r"Source caption: (.*)", prompt)[-1]
        text = f" both are pictures of related things. Source only: {src}. Target only: {cap}."
        return ("Shared:" + text) if chat else text
    return ("Shared: both pictures show the same kind of object in similar light. Source only: it is seen "
            "from the front on a plain background. Target only: it is seen from the side outdoors.")


async def _handle(request: Request, chat: bool) -> Any:
    raw = await request.body()
    body = json.loads(raw)
    prompt, images = _prompt_of(body)
    key = hashlib.sha256(json.dumps([prompt, body.get("seed")], sort_keys=True).encode()).hexdigest()[:16]
    mode = STATE["script"].pop(0) if STATE["script"] else "ok"
    if STATE["die_after"] is not None and STATE["answered"] >= STATE["die_after"]:
        _log({"key": key, "mode": "die", "answered": False})
        os.kill(os.getpid(), signal.SIGKILL)
    if STATE["delay"]:
        await asyncio.sleep(STATE["delay"])
    line = prompt.rstrip().splitlines()[-1].startswith("Instruction:") if prompt.strip() else False
    _log({"key": key, "mode": mode, "images": images, "answered": mode in ("ok", "empty", "refusal", "const", "long", "badusage", "badparts"),
          "endpoint": "chat" if chat else "completions", "auth": request.headers.get("authorization", ""),
          "line": line, "seed": body.get("seed"), "stop": body.get("stop"), "max_tokens": body.get("max_tokens"),
          "temperature": body.get("temperature"), "tail": prompt[-80:]})
    if mode in ("429", "500", "503", "400"):
        headers = {"Retry-After": "0"} if mode == "429" else {}
        return JSONResponse({"error": {"message": f"told to fail with {mode}"}}, status_code=int(mode), headers=headers)
    if mode == "malformed":
        return PlainTextResponse("{not json", status_code=200)
    if mode == "nochoices":
        return JSONResponse({"object": "chat.completion", "choices": []})
    if mode == "hang":
        await asyncio.sleep(3600)
    canned = {"empty": "", "refusal": "I'm sorry, but I can't help with that request."}
    if mode in canned:
        text = canned[mode]
    elif line:
        text = _line_reply(prompt, body.get("seed"), mode)
    else:
        text = _reply(prompt, chat)
    STATE["answered"] += 1
    usage: dict[str, Any] = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
    if mode == "badusage":
        usage["prompt_tokens"] = [1, 2]
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if mode == "long" else "stop"}
    if chat:
        content: Any = [{"type": "text", "text": 42}] if mode == "badparts" else text
        choice["message"] = {"role": "assistant", "content": content}
    elif mode == "badparts":
        choice["text"] = {"parts": [text]}
    else:
        choice["text"] = text
    return {"id": "x", "object": "chat.completion" if chat else "text_completion", "model": body.get("model"),
            "choices": [choice], "usage": usage}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Any:
    return await _handle(request, chat=True)


@app.post("/v1/completions")
async def completions(request: Request) -> Any:
    return await _handle(request, chat=False)


@app.post("/control")
async def control(request: Request) -> Any:
    body = await request.json()
    for k in ("script", "die_after", "delay", "models"):
        if k in body:
            STATE[k] = body[k]
    return {"ok": True}


@app.get("/v1/models")
async def models() -> Any:
    """As vLLM lists its served models (neither logged nor counted: request counts and `die_after` stay)."""
    if STATE["models"] is None:
        return JSONResponse({"error": {"message": "not found"}}, status_code=404)
    return {"object": "list", "data": [{"id": m, "object": "model", "root": f"/models/{m}"} for m in STATE["models"]]}


@app.get("/health")
async def health() -> Any:
    return {"status": "ok"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", default="")
    ap.add_argument("--die-after", type=int, default=None)
    a = ap.parse_args()
    STATE["log"], STATE["die_after"] = a.log or None, a.die_after
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")
