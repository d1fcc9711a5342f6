#!/usr/bin/env bash
# Data-parallel training on GPUs through msrun (NCCL): one process per GPU.
#
#   bash scripts/run_distributed_gpu.sh DEVICE_NUM CONFIG [key=value ...]
#
# DEVICE_NUM GPUs of this machine (CUDA_VISIBLE_DEVICES picks which) each train on data.batch_size rows of their own
# shard (global batch DEVICE_NUM x NODES x data.batch_size); gradients are averaged; rank 0 writes checkpoints and
# train_log.jsonl; each rank logs to LOG_DIR/worker_<rank>.log (default LOG_DIR: <train.output_dir>/logs).
# Several machines: run the same command on each with NODES, NODE_RANK (0..NODES-1) and MASTER_ADDR (node 0's
# address) set. Environment: PYTHON, MASTER_PORT (8118), CLUSTER_TIMEOUT (seconds, 600).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"
need_operands 2 "$@"
require_count DEVICE_NUM "$1"
msrun_train GPU "$1" "$2" "${@:3}"
