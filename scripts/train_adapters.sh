#!/usr/bin/env bash
# Retrain the shipped preference adapters (assets/adapters/pos and neg) on the 2-core CPU, as they were
# trained (docs/BENCHMARKS.md §2, session 6): answer-scoped LoRA (q, o and the MLP at the answer position,
# layers 12-29), graded examples from half of the ml-latest-small users, training labels mixing the
# person's own rating, the mean rating printed beside each candidate and its genre match with the listed
# movies; validation on new users' own ratings. ~65 min for the stored base pass (resumable, reused by
# reruns), then ~15 min for 6 epochs. Resumes from runs/adapters.
# The shipped pair mixes two templates (sessions 15 and 24): "neg" is this command's letters-v5 adapter (session 6,
# both tasks), "pos" the letters-v11 one of
#   scripts/train_adapters.sh --template letters-v11 --task pos --init-seed 3 --out-dir runs/v11pos/adapters --run-dir runs/v11pos/run
# (13 + 3.5 min on a 2-core CPU), runs/v11pos/adapters/pos copied into assets/adapters/pos; then
# scripts/check_horror.py assets/adapters --record.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m recsys.finetune --labels rated --user-fraction 0.5 --max-examples-per-user 6 \
  --val-users 60 --max-val-examples 80 --adapter-scope answer --threads 2 --lora-layers $(seq 12 29) \
  --target-modules q_proj o_proj gate_proj up_proj down_proj --lr 1e-3 --warmup-steps 20 --epochs 6 \
  --eval-every 95 --checkpoint-every 95 --batch-size 16 \
  --person-weight 0.5 --printed-weight 0.5 --genre-weight 3 \
  --out-dir assets/adapters --run-dir runs/adapters "$@"
