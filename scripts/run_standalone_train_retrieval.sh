#!/usr/bin/env bash
# Fine-tune a pre-trained model for cross-modal retrieval on one device (CPU, or the GPU/Ascend MindSpore targets).
#
#   bash scripts/run_standalone_train_retrieval.sh PRETRAINED [CONFIG] [key=value ...]
#
# PRETRAINED: a pre-training checkpoint or run directory (its newest checkpoint), e.g. runs/demo/pretrain.
# CONFIG: a retrieval recipe (default config/retrieval_demo.yaml); key=value pairs override it
# (e.g. data.path=... train.output_dir=...). Rerunning the same command resumes from the newest checkpoint.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE_OF="$0" DEFAULT_CONFIG="$ROOT/config/retrieval_demo.yaml" exec bash "$ROOT/scripts/finetune.sh" "$@"
