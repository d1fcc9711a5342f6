#!/usr/bin/env bash
# Fine-tune a pre-trained model for cross-modal retrieval on one device (CPU, or the GPU/Ascend MindSpore targets).
#
#   bash scripts/run_standalone_train_retrieval.sh PRETRAINED [CONFIG] [key=value ...]
#
# PRETRAINED: a pre-training checkpoint or run directory (its newest checkpoint), e.g. runs/demo/pretrain.
# CONFIG: a retrieval recipe (default config/retrieval_demo.yaml); key=value pairs override it
# (e.g. data.path=... train.output_dir=...). Rerunning the same command resumes from the newest checkpoint.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRETRAINED="$1"
CONFIG="${2:-$ROOT/config/retrieval_demo.yaml}"
shift $(( $# >= 2 ? 2 : 1 ))
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"
exec "${PYTHON:-python}" "$ROOT/train.py" --config "$CONFIG" --resume --set "model.init_from=$PRETRAINED" "$@"
