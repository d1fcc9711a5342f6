#!/usr/bin/env bash
# The body of run_standalone_train_retrieval.sh and train_caption.sh (which set TASK): train.py --finetune.
#
#   TASK=retrieval bash scripts/finetune.sh PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_operands 3 "$@"  # the usage printed is that of USAGE_OF, the script that ran this one
exec "${PYTHON:-python}" "$ROOT/train.py" --finetune "${TASK:?set TASK}" "$@"
