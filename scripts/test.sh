#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite offline on the CPU; arguments go to pytest.
# CI runs it bare (everything). For local iteration: `scripts/test.sh -m "not slow"` leaves out the tests
# marked slow (torchrun, torch.compile, every-family runs, the demo model); see docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest "$@"
