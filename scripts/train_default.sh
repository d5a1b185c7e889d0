#!/usr/bin/env bash
# Retrain the shipped default retriever (SASRec on ml-latest-small) into assets/.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m recsys.sasrec --dataset ml-latest-small --out assets/sasrec/ml-latest-small "$@"
