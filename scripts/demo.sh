#!/usr/bin/env bash
# The main job on the bundled demo model, offline: calibrate a profile, then generate with skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1
mkdir -p out
.venv/bin/magcache calibrate --out out/demo.yaml --force
.venv/bin/magcache run --profile out/demo.yaml -p "a handwritten digit seven" -s 0 --output out/seven.png --compare \
    --speedup 2 "$@"
