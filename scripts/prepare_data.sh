#!/usr/bin/env bash
# Prepare a dataset: raw files or precomputed features -> MindRecord shards + meta.json.
#
#   bash scripts/prepare_data.sh SOURCE OUT_DIR [--format manifest|coco|karpathy|aic|csv|webdataset|narratives|vqa]
#        [--on-error fail|skip] [--like TRAIN_DIR] [--split NAME] [--image-dir DIR] [--audio-dir DIR]
#        [--annotations VQA_ANNOTATIONS] [--csv-img-key COL] [--csv-caption-key COL] [--csv-audio-key COL]
#        [--csv-separator SEP] [--config YAML] [--set key=value ...]
#
# A source with several splits (a Karpathy JSON, a manifest with a 'split' field) is prepared into one OUT_DIR, its
# standardisation statistics from the training split.
#
# Default: stop at the first bad sample (naming the line, the file and the problem) and write nothing.
# --on-error skip: skip bad samples, list them in OUT_DIR/meta.json and print the count.
# --like TRAIN_DIR: reuse the tokenizer, feature settings, labels and region codebook of an earlier prepared set.
# VQA (--format vqa): SOURCE is a questions JSON, --annotations its answers (none for a test split), --image-dir the
# image folder or a JSON Lines manifest of {image_id, image}, --audio-dir spoken questions (<question_id>.wav).
# CSV / TSV (--format csv): --csv-img-key, --csv-caption-key and --csv-audio-key name the columns, --csv-separator
# the field separator (default: a tab for .tsv, else a comma).
# Exit status: 0 done; 2 bad input (one `error: ...` line naming the file, line or sample; nothing written); 1 a full
# disk (one line, nothing written) or a bug.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_args 2 "$@"
exec "${PYTHON:-python}" -m src.data.prepare "$@"
