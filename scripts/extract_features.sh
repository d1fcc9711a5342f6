#!/usr/bin/env bash
# Extract once, prepare many times: run the feature extractors (EfficientNet-Lite0 image regions and Whisper tiny.en
# audio frames by default) over a source and write one .npz per image and per recording, plus OUT_DIR/manifest.jsonl
# pointing at them, which scripts/prepare_data.sh prepares into the same shards as the source itself.
#
#   bash scripts/extract_features.sh SOURCE OUT_DIR [--format manifest|coco|karpathy|aic|csv|webdataset|narratives]
#        [--on-error fail|skip] [--split NAME] [--image-dir DIR] [--audio-dir DIR] [--annotations FILE]
#        [--csv-img-key COL] [--csv-caption-key COL] [--csv-audio-key COL] [--csv-separator SEP] [--config YAML]
#        [--set key=value ...]
#
# SOURCE and the options are those of scripts/prepare_data.sh (a VQA source is prepared directly: a manifest has no
# place for its answers, --annotations). Exit status: 0 done; 2 bad input (one `error: ...` line naming the file, line
# or sample; nothing written); 1 a full disk (one line, nothing written) or a bug.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_args 2 "$@"
exec "${PYTHON:-python}" -m src.data.extract "$@"
