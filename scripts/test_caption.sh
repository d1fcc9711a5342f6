#!/usr/bin/env bash
# Decode the validation split with a caption checkpoint and score it (BLEU-1..4, CIDEr-D, WER, CER): table on stdout,
# metrics and predictions as JSON beside the checkpoint.
#
#   bash scripts/test_caption.sh CKPT [TASK ...] [-- eval.py options ...]
#
# CKPT: a caption checkpoint or run directory. TASK: caption (image), asr (audio), caption_ia (image+audio); default
# all three. Options after -- go to eval.py, e.g. -- --split val --limit 100 --set generate.strategy=greedy.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_operands 1 "$@"
CKPT="$1"
shift
TASKS=()
while [ $# -ge 1 ] && [ "$1" != "--" ]; do
  TASKS+=("$1")
  shift
done
[ $# -ge 1 ] && shift  # the --
[ ${#TASKS[@]} -gt 0 ] || TASKS=(caption asr caption_ia)
for task in "${TASKS[@]}"; do
  "${PYTHON:-python}" "$ROOT/eval.py" --task "$task" --ckpt "$CKPT" "$@"
done
