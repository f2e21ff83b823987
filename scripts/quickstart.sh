#!/usr/bin/env bash
# One command on a fresh machine: set up .venv, then run the main job on the embedded data
# (fine-tune real pretrained MiniLM-L6 BERT weights on data/paraphrase_sample over 2 CPU
# contexts, then a short pretraining run on data/pretrain_sample.txt). Arguments go to
# `gluonbert demo`, e.g. `bash scripts/quickstart.sh --data-dir ../shared/data/mrpc`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gluonbert demo "$@"
