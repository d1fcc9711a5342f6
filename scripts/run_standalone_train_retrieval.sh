#!/usr/bin/env bash
# Fine-tune a pre-trained run for cross-modal retrieval on one device (CPU, or the GPU/Ascend MindSpore targets).
#
#   bash scripts/run_standalone_train_retrieval.sh PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]
#
# PRETRAINED: a pre-training run directory (or one of its checkpoints). DATA: a prepared dataset, prepared with
# --like PRETRAINED. OUT: this run's directory; rerunning the same command resumes it, and an OUT holding a run of
# another recipe or data is refused. RECIPE: the training settings (default config/retrieval_finetune.yaml); the
# model's shape always comes from PRETRAINED. key=value pairs override the recipe (e.g. train.epochs=2).
TASK=retrieval USAGE_OF="$0" exec bash "$(dirname "${BASH_SOURCE[0]}")/finetune.sh" "$@"
