#!/usr/bin/env bash
# Create .venv and install magcache with its test dependencies. Idempotent: when .venv already holds this
# checkout's install for the same pyproject.toml (and this script), it does nothing and touches no package.
#
# torch: where no NVIDIA GPU is visible we ask for the CPU build. On our CI/dev machines
# `torch==2.13.0` resolves to a CPU wheel on local disk; elsewhere set TORCH_SPEC and/or
# TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) to choose the build you want.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VPY=.venv/bin/python
STAMP=.venv/.magcache-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $PWD"
if [ -x "$VPY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] &&
   "$VPY" -c "import magcache_cli, torch, sys; sys.exit(not magcache_cli.__file__.startswith('$PWD/'))" 2>/dev/null; then
  exit 0  # everything is installed: nothing to do
fi
[ -x "$VPY" ] || "$PY" -m venv .venv
"$VPY" -m pip install -q --upgrade pip >/dev/null
if ! "$VPY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then spec=${TORCH_SPEC:-torch}; else spec=${TORCH_SPEC:-torch==2.13.0}; fi
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$VPY" -m pip install -q "$spec" --index-url "$TORCH_INDEX_URL"
  else
    "$VPY" -m pip install -q "$spec"
  fi
fi
"$VPY" -m pip install -q -e ".[dev]"
echo "$want" > "$STAMP"
