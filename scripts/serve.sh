#!/usr/bin/env bash
# Serve bundles (export.py --out) or runs over HTTP with dynamic batching: POST /caption, /transcribe, /answer,
# /embed, /search, /draw (each a multipart form, each answering JSON), GET /health and /metrics.
#
#   bash scripts/serve.sh BUNDLE [BUNDLE ...] [--port 8000] [--host 127.0.0.1] [--index INDEX] [--max-batch 16]
#        [--window-ms 10] [--queue 64] [--timeout 30] [--max-body-mb 10] [--max-audio-seconds 30]
#
# SIGTERM or Ctrl-C: the requests in flight are answered, then the process ends by that signal (status 143 or 130);
# exit status 2: a bundle or index that cannot be served (one line).
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_operands 1 "$@"
exec "${PYTHON:-python}" -m src.serve "$@"
