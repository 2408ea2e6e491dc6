"""Before a run: ask each OpenAI-compatible server the annotate section names (`openai:`,
`openai-completions:`, also inside `captions:`) for its models, GET /v1/models with a short timeout.
A server that is down, or a model name it does not serve, then stops the run at once instead of when
the annotate stage starts, possibly hours later. `annotate.probe_servers=false` skips the check (a
server that comes up later, a proxy without /models).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from megapairs.errors import RESUME_HINT, UserError
from megapairs.registry import SpecError, split_spec

if TYPE_CHECKING:
    from megapairs.annotate.config import AnnotateConfig

log = logging.getLogger("megapairs")

PROBE_TIMEOUT_S = 5.0
SERVER_PREFIXES = ("openai", "openai-completions")
SKIP = "annotate.probe_servers=false skips this check"


def server_models(config: "AnnotateConfig", where: str = "annotate") -> dict[str, list[tuple[str, str]]]:
    """Base URL -> [(config field, model name)] for every spec that talks to an OpenAI-compatible server."""
    from megapairs.annotate.client import parse_openai_spec

    out: dict[str, list[tuple[str, str]]] = {}
    for _, field, spec in config.backend_specs(where):
        prefix, rest = split_spec(spec)
        if prefix == "captions":
            prefix, rest = split_spec(rest)
        if prefix in SERVER_PREFIXES:
            url, model = parse_openai_spec(rest)
            out.setdefault(url, []).append((field, model))
    return out


def _served(body: Any) -> tuple[list[str], set[str], bool]:
    """(model ids, names a request may use, whether any name is answered) of a /models reply
    ({"data": [{"id": ..., "root": ...}]}). vLLM answers to the served name (`id`) and to the path it
    loaded (`root`); Ollama lists `name:tag` and answers `name` with `name:latest`; llama.cpp's server
    with one model lists its file (`owned_by: llamacpp`) and answers a request for any name."""
    data = body.get("data") if isinstance(body, dict) else None
    items = [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    ids = [str(m["id"]) for m in items if m.get("id")]
    names = set(ids) | {str(m["root"]) for m in items if m.get("root")}
    names |= {n.removesuffix(":latest") for n in names if n.endswith(":latest")}
    any_name = len(items) == 1 and items[0].get("owned_by") == "llamacpp"
    return ids, names, any_name


def is_loopback(url: str) -> bool:
    """Whether `url` names this machine by a loopback name or address (127.0.0.1, localhost, ::1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def probe_servers(config: "AnnotateConfig", where: str = "annotate", *, remote: bool = False) -> None:
    """Raise when a server the config names cannot be reached (RunFailure, exit 1), refuses the key, or
    does not serve the named model (UserError, exit 2). A server without /models is let through.
    `remote`: annotate runs on other machines (executor ray:ADDRESS), so a loopback URL names each
    node's own machine, which this one cannot check; such servers are skipped with a warning."""
    from megapairs.annotate.llm import BackendUnavailable

    key = config.api_key or os.environ.get("OPENAI_API_KEY", "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for url, uses in server_models(config, where).items():
        field = uses[0][0]
        if remote and is_loopback(url):
            log.warning("annotate: %s (%s) is on each Ray node's own machine; not checked from here", url, field)
            continue
        try:
            resp = httpx.get(f"{url}/models", headers=headers, timeout=PROBE_TIMEOUT_S)
        except httpx.TimeoutException as e:
            raise BackendUnavailable(f"{field}: the server at {url} did not answer GET {url}/models within "
                                     f"{PROBE_TIMEOUT_S:.0f} s ({type(e).__name__})",
                                     hint=f"check that it is up and reachable ({SKIP}), then {RESUME_HINT}") from None
        except httpx.TransportError as e:
            raise BackendUnavailable(f"{field}: no server answers at {url} ({type(e).__name__}: {e})",
                                     hint=f"start it or fix the URL in the spec ({SKIP}), then {RESUME_HINT}") from None
        if resp.status_code in (401, 403):
            raise UserError(f"{field}: the server at {url} refused the request (HTTP {resp.status_code})",
                            hint="set OPENAI_API_KEY (or annotate.api_key) to a key it accepts")
        try:
            served, names, any_name = _served(resp.json()) if resp.status_code == 200 else ([], set(), False)
        except ValueError:
            served, names, any_name = [], set(), False
        if not served:
            log.warning("annotate: %s/models gave no model list (HTTP %d); the model names are not checked",
                        url, resp.status_code)
            continue
        if any_name:
            log.info("annotate: %s is a llama.cpp server with one model (%s), which answers any model name",
                     url, served[0])
            continue
        for field, model in uses:
            if model and model not in names:
                shown = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
                raise SpecError(f"{field}: the server at {url} does not serve model {model!r}; it serves: {shown}",
                                hint=f"fix the #MODEL part of the spec, e.g. #{served[0]} ({SKIP})")
        log.info("annotate: %s serves %s", url, ", ".join(served[:5]))
