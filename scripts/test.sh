#!/usr/bin/env bash
# The test command: sets up .venv if needed (with the optional torch/transformers parity
# extras, so the HuggingFace comparisons run instead of skipping), then runs pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/train`.
set -euo pipefail
cd "$(dirname "$0")/.."
GLUONBERT_EXTRAS=${GLUONBERT_EXTRAS-parity} bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
