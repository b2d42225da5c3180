#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite offline on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest "$@"
