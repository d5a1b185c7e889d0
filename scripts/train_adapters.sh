#!/usr/bin/env bash
# Retrain the shipped preference adapters (assets/adapters/pos and neg) on the 2-core CPU, as they were
# trained (docs/BENCHMARKS.md §2): LoRA q,k,v,o on the top 6 of 30 layers through the frozen-layer fast
# path, ml-latest-small, 20% of users, both tasks on shared candidate lists. Resumes from runs/adapters.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m recsys.finetune --threads 2 --user-fraction 0.2 --max-examples-per-user 10 \
  --val-users 60 --max-val-examples 100 --epochs 3 --batch-size 16 --lr 3e-3 --warmup-steps 10 \
  --eval-every 30 --checkpoint-every 15 --lora-layers 24 25 26 27 28 29 \
  --target-modules q_proj k_proj v_proj o_proj --max-minutes 55 \
  --out-dir assets/adapters --run-dir runs/adapters "$@"
