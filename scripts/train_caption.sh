#!/usr/bin/env bash
# Fine-tune the text decoder of a pre-trained run for captioning, speech recognition and image+audio -> text on one
# device (CPU, or the GPU/Ascend MindSpore targets).
#
#   bash scripts/train_caption.sh PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]
#
# PRETRAINED: a pre-training run directory (or one of its checkpoints). DATA: a prepared dataset, prepared with
# --like PRETRAINED. OUT: this run's directory; rerunning the same command resumes it, and an OUT holding a run of
# another recipe or data is refused. RECIPE: the training settings (default config/caption_finetune.yaml: every input
# set the data has); the model's shape always comes from PRETRAINED. key=value pairs override the recipe, e.g.
# caption.inputs=[audio] for speech recognition only.
TASK=caption USAGE_OF="$0" exec bash "$(dirname "${BASH_SOURCE[0]}")/finetune.sh" "$@"
