#!/usr/bin/env bash
# Evaluate retrieval in every direction (R@1/5/10, median rank): two-stage ranking, table on stdout, JSON beside
# the checkpoint.
#
#   bash scripts/run_standalone_eval_retrieval.sh CKPT [DATA] [eval.py options ...]
#
# CKPT: a retrieval checkpoint or run directory. DATA: a prepared dataset to evaluate instead of the run's own
# (prepare it with --like the training set). Options go to eval.py, e.g. --split val --full --set eval.rerank_k=32.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_operands 1 "$@"
CKPT="$1"
shift
DATA_ARGS=()
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then
  DATA_ARGS=(--data "$1")
  shift
fi
exec "${PYTHON:-python}" "$ROOT/eval.py" --task retrieval --ckpt "$CKPT" "${DATA_ARGS[@]}" "$@"
