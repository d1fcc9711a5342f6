#!/usr/bin/env bash
# Data-parallel training on Ascend 910 NPUs (HCCL), one process per NPU.
#
#   bash scripts/run_distributed_ascend.sh RANK_TABLE_FILE DEVICE_NUM CONFIG [key=value ...]
#   bash scripts/run_distributed_ascend.sh --msrun DEVICE_NUM CONFIG [key=value ...]
#
# Rank-table form: the table (write one with `python -m src.train.rank_table write --devices 8 --out FILE`) is
# validated against DEVICE_NUM (the job's device count) before anything starts; then this server starts one process
# for each of its devices in the table, with DEVICE_ID, RANK_ID, RANK_SIZE and RANK_TABLE_FILE set, each logging to
# LOG_DIR/worker_<rank>.log (default LOG_DIR: <train.output_dir>/logs). If a process fails, the others are stopped,
# its log tail is printed and the script exits 1. Several servers: run it on each with SERVER_ID set to that
# server's server_id in the table.
# msrun form: as run_distributed_gpu.sh (NODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, CLUSTER_TIMEOUT).
# Each rank trains on data.batch_size rows of its own shard; rank 0 writes checkpoints and train_log.jsonl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
need_args 3 "$@"
require_count DEVICE_NUM "$2"
if [ "$1" = "--msrun" ]; then
  msrun_train Ascend "$2" "$3" "${@:4}"
  exit 0
fi
TABLE="$(realpath -m "$1")"
DEVICE_NUM="$2"
CONFIG="$3"
shift 3
"$PY" -m src.train.rank_table check "$TABLE" --devices "$DEVICE_NUM" || exit 2
RANK_LINES="$("$PY" -m src.train.rank_table ranks "$TABLE" ${SERVER_ID:+--server "$SERVER_ID"})" || exit 2
LOG_DIR="$(log_dir_of "$CONFIG" "$@")"
mkdir -p "$LOG_DIR"
echo "rank table $TABLE: $(echo "$RANK_LINES" | wc -l) of $DEVICE_NUM ranks on this server, logs in $LOG_DIR"
PIDS=()
RANK_OF=()
while read -r rank device; do
  start_rank "$rank" "$LOG_DIR" env DEVICE_ID="$device" RANK_ID="$rank" RANK_SIZE="$DEVICE_NUM" \
    RANK_TABLE_FILE="$TABLE" "$PY" "$ROOT/train.py" --config "$CONFIG" --resume --set train.device=Ascend "$@"
done <<< "$RANK_LINES"
wait_ranks "$LOG_DIR"
echo "all $DEVICE_NUM ranks finished"
