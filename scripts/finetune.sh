#!/usr/bin/env bash
# The body of run_standalone_train_retrieval.sh and train_caption.sh (which set TASK): train.py --finetune.
#
#   TASK=retrieval bash scripts/finetune.sh PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
if [ $# -lt 3 ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${USAGE_OF:-$0}"
  exit 2
fi
exec "${PYTHON:-python}" "$ROOT/train.py" --finetune "${TASK:?set TASK}" "$@"
