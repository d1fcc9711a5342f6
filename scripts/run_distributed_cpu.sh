#!/usr/bin/env bash
# Data-parallel training on CPU processes through msrun (for checking a distributed recipe on any machine; each
# process uses all cores, so it is not faster than one process on one machine).
#
#   bash scripts/run_distributed_cpu.sh WORKERS CONFIG [key=value ...]
#
# WORKERS processes each train on data.batch_size rows of their own shard (global batch WORKERS x data.batch_size);
# gradients are averaged; rank 0 writes checkpoints and train_log.jsonl; each rank logs to LOG_DIR/worker_<rank>.log
# (default LOG_DIR: <train.output_dir>/logs). Environment: PYTHON, MASTER_ADDR (127.0.0.1), MASTER_PORT (8118),
# NODES and NODE_RANK (several machines: start the same command on each), CLUSTER_TIMEOUT (seconds, 600).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
need_operands 2 "$@"
require_count WORKERS "$1"
msrun_train CPU "$1" "$2" "${@:3}"
