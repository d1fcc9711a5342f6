#!/usr/bin/env bash
# Prepare a dataset: raw files or precomputed features -> MindRecord shards + meta.json.
#
#   bash scripts/prepare_data.sh MANIFEST OUT_DIR [--format manifest|coco|narratives] [--on-error fail|skip]
#        [--like TRAIN_DIR] [--split NAME] [--image-dir DIR] [--audio-dir DIR] [--config YAML] [--set key=value ...]
#
# Default: stop at the first bad sample (naming the line, the file and the problem) and write nothing.
# --on-error skip: skip bad samples, list them in OUT_DIR/meta.json and print the count.
# --like TRAIN_DIR: reuse the tokenizer, feature settings, labels and region codebook of an earlier prepared set.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_args 2 "$@"
exec "${PYTHON:-python}" -m src.data.prepare "$@"
