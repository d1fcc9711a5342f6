#!/usr/bin/env bash
# Decode the validation split with a caption checkpoint and score it (BLEU-1..4, CIDEr-D, WER, CER): table on stdout,
# metrics and predictions as JSON beside the checkpoint.
#
#   bash scripts/test_caption.sh CKPT [TASK ...] [-- eval.py options ...]
#
# CKPT: a caption checkpoint or run directory. TASK: caption (image), asr (audio), caption_ia (image+audio); default
# all three. Options after -- go to eval.py, e.g. -- --split val --limit 100 --set generate.strategy=greedy.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CKPT="$1"
shift
TASKS=()
while [ $# -ge 1 ] && [ "$1" != "--" ]; do
  TASKS+=("$1")
  shift
done
[ $# -ge 1 ] && shift  # the --
[ ${#TASKS[@]} -gt 0 ] || TASKS=(caption asr caption_ia)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"
for task in "${TASKS[@]}"; do
  "${PYTHON:-python}" "$ROOT/eval.py" --task "$task" --ckpt "$CKPT" "$@"
done
