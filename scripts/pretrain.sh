#!/usr/bin/env bash
# Pre-train OPT on one machine from prepared data, every stage resumable: the dVAE (stage 1 of the vision decoder),
# its codes (stored with DATA), then pre-training with every pretext task. Rerun the same command to resume.
#
#   bash scripts/pretrain.sh DATA OUT [PRETRAIN_RECIPE.yaml] [DVAE_RECIPE.yaml] [-- key=value ...]
#
# DATA: a prepared dataset (scripts/prepare_data.sh). OUT: OUT/dvae and OUT/pretrain are written. The recipes default
# to config/pretrain_base.yaml and config/dvae_base.yaml; key=value pairs after -- override the pre-training recipe
# (e.g. train.amp_level=O0 on CPU). A pre-training recipe with loss.dir 0 needs no dVAE: those stages are skipped.
# For several devices, run the dVAE and codes stages here, then scripts/run_distributed_*.sh with the recipe.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
need_operands 2 "$@"
DATA="$1"
OUT="$2"
shift 2
PRETRAIN="$ROOT/config/pretrain_base.yaml"
DVAE="$ROOT/config/dvae_base.yaml"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then PRETRAIN="$1"; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then DVAE="$1"; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
PY="${PYTHON:-python}"

dir_weight="$("$PY" "$ROOT/train.py" --config "$PRETRAIN" --set "$@" --show loss.dir)" || exit  # its one-line error is printed
if awk -v w="$dir_weight" 'BEGIN { exit !(w > 0) }'; then
  echo "== dVAE -> $OUT/dvae"
  "$PY" "$ROOT/train.py" --config "$DVAE" --resume --set "data.path=$DATA" "train.output_dir=$OUT/dvae"
  echo "== dVAE codes -> $DATA/image_codes"
  "$PY" -m src.tasks.dvae_codes --dvae "$OUT/dvae" --data "$DATA"
fi
echo "== pre-training -> $OUT/pretrain"
exec "$PY" "$ROOT/train.py" --config "$PRETRAIN" --resume --set "data.path=$DATA" "train.output_dir=$OUT/pretrain" "$@"
