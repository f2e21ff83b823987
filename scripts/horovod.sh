#!/usr/bin/env bash
# Builds Horovod against the MXNet installed in .venv (Gloo controller and operations; no MPI,
# TensorFlow or PyTorch) and installs it there. Called by scripts/setup.sh when
# GLUONBERT_HOROVOD=1 (scripts/test.sh sets it); see docs/distributed.md.
#
# The wheel is cached in $GLUONBERT_CACHE/wheels/<key>/ (default ~/.cache/gluonbert), keyed by
# the Horovod version, the MXNet distribution and version it was built against, the Python ABI
# and the machine: a fresh .venv on the same machine installs it in seconds, and a changed MXNet
# (another version, or mxnet-cu1xx) gets its own build. A cold build compiles Horovod's C++
# (minutes; measured times in docs/distributed.md). pip's own wheel cache is bypassed: it is
# keyed by the source archive alone and would hand a wheel built against another MXNet.
set -euo pipefail
cd "$(dirname "$0")/.."
HOROVOD_VERSION=0.28.1
PY=.venv/bin/python
PIP="$PY -m pip"

# Your own HOROVOD_* build settings (HOROVOD_GPU_OPERATIONS=NCCL, HOROVOD_CUDA_HOME...) reach
# the build and, hashed, the key.
key=$($PY - "$HOROVOD_VERSION" <<'EOF'
import hashlib
import importlib.metadata as md
import os
import platform
import sys
dist = (md.packages_distributions().get('mxnet') or ['mxnet'])[0]
key = (f'horovod-{sys.argv[1]}-{dist}-{md.version(dist)}-{sys.implementation.cache_tag}-'
       f'{platform.machine()}')
own = sorted(f'{k}={v}' for k, v in os.environ.items() if k.startswith('HOROVOD_'))
print(key + ('-' + hashlib.sha256('\n'.join(own).encode()).hexdigest()[:8] if own else ''))
EOF
)
stamp=.venv/.horovod-build
if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && $PY -c "import horovod.mxnet" 2>/dev/null; then
  exit 0
fi

cache_root=${GLUONBERT_CACHE:-$HOME/.cache/gluonbert}/wheels
cache=$cache_root/$key
wheel=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  if ! command -v cmake >/dev/null; then     # Horovod's build runs cmake from PATH
    $PIP install -q cmake
    export PATH="$PWD/.venv/bin:$PATH"
  fi
  mkdir -p "$cache_root"
  tmp=$(mktemp -d "$cache_root/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "building Horovod $HOROVOD_VERSION against $key (a few minutes, once per machine)"
  start=$(date +%s)
  HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
  HOROVOD_WITHOUT_PYTORCH=1 \
    $PIP wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$tmp" \
      "horovod==$HOROVOD_VERSION"
  mkdir -p "$cache"
  built=$(ls "$tmp"/horovod-*.whl)
  mv "$built" "$cache/"                      # a rename: concurrent builders each move a whole file
  wheel=$cache/$(basename "$built")
  echo "built Horovod in $(( $(date +%s) - start )) s; cached as $wheel"
fi
$PIP install -q -c constraints.txt "$wheel"
$PY -c "import horovod.mxnet"                # fails here, not in the tests, when the build is unusable
echo "$key" > "$stamp"
