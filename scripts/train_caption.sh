#!/usr/bin/env bash
# Fine-tune the text decoder of a pre-trained model for captioning, speech recognition and image+audio -> text on one
# device (CPU, or the GPU/Ascend MindSpore targets).
#
#   bash scripts/train_caption.sh PRETRAINED [CONFIG] [key=value ...]
#
# PRETRAINED: a pre-training checkpoint or run directory (its newest checkpoint), e.g. runs/demo/pretrain.
# CONFIG: a caption recipe (default config/caption_demo.yaml); key=value pairs override it, e.g.
# caption.inputs=[audio] for speech recognition only. Rerunning the same command resumes from the newest checkpoint.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE_OF="$0" DEFAULT_CONFIG="$ROOT/config/caption_demo.yaml" exec bash "$ROOT/scripts/finetune.sh" "$@"
