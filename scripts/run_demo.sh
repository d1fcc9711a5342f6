#!/usr/bin/env bash
# The demo, end to end on CPU: prepare the real tri-modal demo set if it is absent, pre-train the demo model (MiniLM
# initialised, all pretext losses in one train step) for a bounded time, show the losses falling, leave a checkpoint.
#
#   bash scripts/run_demo.sh [RUN_DIR]            (default: runs/demo)
#
# Running it again continues a run cut short by the time bound from its newest checkpoint (up to train.max_steps).
# Environment: PYTHON (default python), DATA (demo data directory, default data/demo), MINUTES (training time bound,
# default 12).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
DATA="${DATA:-$ROOT/data/demo}"
RUN="${1:-$ROOT/runs/demo}"
MINUTES="${MINUTES:-12}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"  # MindSpore's C++ warnings off

if [ ! -f "$DATA/prepared/meta.json" ]; then
  PYTHON="$PY" bash "$ROOT/scripts/prepare_demo_data.sh" "$DATA"
fi

echo "== pre-training (at most $MINUTES minutes) -> $RUN/pretrain"
"$PY" "$ROOT/train.py" --config "$ROOT/config/pretrain_demo.yaml" --resume \
  --set "data.path=$DATA/prepared" "train.output_dir=$RUN/pretrain" "train.max_minutes=$MINUTES"
"$PY" "$ROOT/scripts/show_losses.py" "$RUN/pretrain/train_log.jsonl"
echo "checkpoint: $(ls "$RUN"/pretrain/step_*.ckpt | tail -1)"
