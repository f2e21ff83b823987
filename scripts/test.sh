#!/usr/bin/env bash
# The test command: sets up .venv if needed (with the optional torch/transformers parity
# extras, so the HuggingFace comparisons run instead of skipping), then runs pytest.
#   bash scripts/test.sh                 every test (what CI runs; ~10 minutes on 2 cores)
#   bash scripts/test.sh --fast          the fast tier for editing (-m "not slow", < 2 minutes)
# Other arguments go to pytest, e.g. `bash scripts/test.sh tests/train`.
set -euo pipefail
cd "$(dirname "$0")/.."
GLUONBERT_EXTRAS=${GLUONBERT_EXTRAS-parity} bash scripts/setup.sh
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
exec .venv/bin/python -m pytest -q "${args[@]}"
