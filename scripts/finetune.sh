#!/usr/bin/env bash
# Fine-tune a pre-trained model with a task recipe on one device (CPU, or the GPU/Ascend MindSpore targets); rerunning
# the same command resumes from the newest checkpoint. The body of run_standalone_train_retrieval.sh and
# train_caption.sh, which set DEFAULT_CONFIG.
#
#   bash scripts/finetune.sh PRETRAINED [CONFIG] [key=value ...]
set -euo pipefail
if [ $# -lt 1 ] || { [ $# -lt 2 ] && [ -z "${DEFAULT_CONFIG:-}" ]; }; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${USAGE_OF:-$0}"
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRETRAINED="$1"
CONFIG="${2:-$DEFAULT_CONFIG}"
shift $(( $# >= 2 ? 2 : 1 ))
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"
exec "${PYTHON:-python}" "$ROOT/train.py" --config "$CONFIG" --resume --set "model.init_from=$PRETRAINED" "$@"
