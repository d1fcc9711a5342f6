#!/usr/bin/env bash
# Extract once, prepare many times: run the feature extractors (EfficientNet-Lite0 image regions and Whisper tiny.en
# audio frames by default) over a source and write one .npz per image and per recording, plus OUT_DIR/manifest.jsonl
# pointing at them, which scripts/prepare_data.sh prepares into the same shards as the source itself.
#
#   bash scripts/extract_features.sh MANIFEST OUT_DIR [--format manifest|coco|narratives] [--on-error fail|skip]
#        [--split NAME] [--image-dir DIR] [--audio-dir DIR] [--config YAML] [--set key=value ...]
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_args 2 "$@"
exec "${PYTHON:-python}" -m src.data.extract "$@"
