#!/usr/bin/env bash
# Build the demo's VQA v2-format set from the demo data and prepare it (train, and val --like train).
#
#   bash scripts/prepare_demo_vqa.sh [DEMO_DIR]        (default: data/demo; needs DEMO_DIR/raw from
#                                                       scripts/prepare_demo_data.sh)
#
# Writes DEMO_DIR/raw/vqa (questions_<split>.json, annotations_<split>.json, images.jsonl, audio/<question_id>.wav:
# every question spoken) and prepares DEMO_DIR/vqa/train and DEMO_DIR/vqa/val with config/vqa_demo.yaml's feature
# settings and the demo's vocab. Every step reuses what an earlier run finished. Environment: PYTHON.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/data/demo}"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

"$PY" "$ROOT/scripts/make_demo_vqa.py" "$OUT/raw"
VQA="$OUT/raw/vqa"
for split in train val; do
  like=()
  [ "$split" = val ] && like=(--like "$OUT/vqa/train")
  PYTHON="$PY" bash "$ROOT/scripts/prepare_data.sh" "$VQA/questions_$split.json" "$OUT/vqa/$split" --format vqa \
    --split "$split" --annotations "$VQA/annotations_$split.json" --image-dir "$VQA/images.jsonl" \
    --audio-dir "$VQA/audio" --config "$ROOT/config/vqa_demo.yaml" --set "prepare.text.vocab=$OUT/raw/vocab.txt" \
    "${like[@]}"
done
echo "demo VQA data ready: $OUT/vqa/train, $OUT/vqa/val"
