#!/usr/bin/env bash
# Build the demo's VQA v2-format set from the demo data and prepare it (train --like the pre-training data, val
# --like train).
#
#   bash scripts/prepare_demo_vqa.sh [DEMO_DIR]        (default: data/demo; needs DEMO_DIR/raw from
#                                                       scripts/prepare_demo_data.sh)
#
# Writes DEMO_DIR/raw/vqa (questions_<split>.json, annotations_<split>.json, images.jsonl, audio/<question_id>.wav:
# every question spoken) and prepares DEMO_DIR/vqa/train like DEMO_DIR/prepared (the pre-training data: its vocab,
# features and statistics; config/vqa_demo.yaml's prepare.vqa.min_count) and DEMO_DIR/vqa/val like the train split. Every
# step reuses what an earlier run finished. Environment: PYTHON.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
at_most_operands 1 "$@"
OUT="${1:-$ROOT/data/demo}"
PY="${PYTHON:-python}"

"$PY" "$ROOT/scripts/make_demo_vqa.py" "$OUT/raw"
VQA="$OUT/raw/vqa"
# train like the pre-training data (its features are what the pre-trained model reads; fine-tuning refuses other
# ones), val like train (its answer vocabulary)
like="$OUT/prepared"
for split in train val; do
  PYTHON="$PY" bash "$ROOT/scripts/prepare_data.sh" "$VQA/questions_$split.json" "$OUT/vqa/$split" --format vqa \
    --split "$split" --annotations "$VQA/annotations_$split.json" --image-dir "$VQA/images.jsonl" \
    --audio-dir "$VQA/audio" --config "$ROOT/config/vqa_demo.yaml" --like "$like"
  like="$OUT/vqa/train"
done
echo "demo VQA data ready: $OUT/vqa/train, $OUT/vqa/val"
