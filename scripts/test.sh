#!/usr/bin/env bash
# The test command: sets up .venv if needed (with the optional torch/transformers parity
# extras, so the HuggingFace comparisons run instead of skipping, and Horovod built against
# MXNet, so the --comm-backend horovod tests run: with GLUONBERT_HOROVOD=1, the default, they
# fail rather than skip when Horovod is missing), then runs pytest.
#   bash scripts/test.sh                 every test (what CI runs; ~20 minutes on 2 cores)
#   bash scripts/test.sh --fast          the fast tier for editing (-m "not slow", < 2 minutes)
# Other arguments go to pytest, e.g. `bash scripts/test.sh tests/train`.
set -euo pipefail
cd "$(dirname "$0")/.."
export GLUONBERT_HOROVOD=${GLUONBERT_HOROVOD-1}
GLUONBERT_EXTRAS=${GLUONBERT_EXTRAS-parity} bash scripts/setup.sh
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
if [ "${GLUONBERT_HOROVOD:-}" = 1 ]; then
  export GLUONBERT_REQUIRE_HOROVOD=1
fi
exec .venv/bin/python -m pytest -q "${args[@]}"
