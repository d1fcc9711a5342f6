#!/usr/bin/env bash
# Decode the validation split with a caption checkpoint and score it (BLEU-1..4, CIDEr-D, WER, CER): table on stdout,
# metrics and predictions as JSON beside the checkpoint.
#
#   bash scripts/test_caption.sh CKPT [TASK ...] [-- eval.py options ...]
#
# CKPT: a caption checkpoint or run directory. TASK: caption (image), asr (audio), caption_ia (image+audio); default:
# each of them whose inputs the evaluated split has (an image-text set: caption). Options after -- go to eval.py,
# e.g. -- --data data/coco_val --split val --limit 100 --set generate.strategy=greedy.
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
if [ ${#TASKS[@]} -eq 0 ]; then
  supported="$("${PYTHON:-python}" - "$CKPT" "$@" <<'EOF'
import sys
import eval as entry
from src.cli import run_cli
from src.data.records import DatasetError
from src.tasks import registry
from src.tasks.caption_eval import supported_tasks

def body():
    args = entry.parse_args(["--task", "caption", "--ckpt", *sys.argv[1:]])
    overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
    cfg, graphs = registry.open_graphs(registry.get("caption", "evaluate"), args.ckpt, None, args.config, overrides)
    split = args.split or cfg.data.eval_split
    tasks = supported_tasks(graphs.data(cfg), split)
    if not tasks:
        raise DatasetError(f"{cfg.data.path}: split '{split}' has no image or audio with text to caption")
    print(" ".join(tasks))

sys.exit(run_cli(body))
EOF
)" || exit $?
  read -ra TASKS <<< "$supported"
fi
for task in "${TASKS[@]}"; do
  "${PYTHON:-python}" "$ROOT/eval.py" --task "$task" --ckpt "$CKPT" "$@"
done
