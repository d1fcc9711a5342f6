#!/usr/bin/env bash
# Build the real, offline tri-modal demo set and prepare it for training.
#
#   bash scripts/prepare_demo_data.sh [OUT_DIR]        (default: data/demo)
#
# Installs the Debian packages it reads from (emoji font and names, clip art, speech synthesis), renders the images,
# speaks every caption, writes OUT_DIR/raw/manifest.jsonl, extends the MiniLM vocab with the Chinese captions, and
# prepares OUT_DIR/prepared (train and val splits); then the VQA set (scripts/prepare_demo_vqa.sh). Every step reuses
# what an earlier run finished.
# Environment: CLIPART (clip-art drawings, default 1200), EMOJI (first N emoji, default all), PYTHON.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
at_most_operands 1 "$@"
OUT="${1:-$ROOT/data/demo}"
PY="${PYTHON:-python}"

PACKAGES="fonts-noto-color-emoji unicode-data unicode-cldr-core openclipart-svg librsvg2-bin espeak-ng flite sox"
missing=$(for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "installing Debian packages: $missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

"$PY" "$ROOT/scripts/make_demo_data.py" "$OUT/raw" --clipart "${CLIPART:-1200}" --emoji "${EMOJI:-0}"
"$PY" -m src.data.tokenizer build-vocab "$OUT/raw/corpus_zh.txt" --base minilm --lang zh --out "$OUT/raw/vocab.txt"
bash "$ROOT/scripts/prepare_data.sh" "$OUT/raw/manifest.jsonl" "$OUT/prepared" \
  --config "$ROOT/config/pretrain_demo.yaml" --set "prepare.text.vocab=$OUT/raw/vocab.txt"
PYTHON="$PY" bash "$ROOT/scripts/prepare_demo_vqa.sh" "$OUT"
echo "demo data ready: $OUT/prepared"
