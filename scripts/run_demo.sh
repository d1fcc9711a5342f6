#!/usr/bin/env bash
# The demo, end to end on CPU: prepare the real tri-modal demo set if it is absent; train the dVAE, report its
# reconstruction PSNR and store the codes of every image; pre-train the demo model (MiniLM initialised, all pretext
# losses including DIR in one train step) for a bounded time and show the losses falling; fine-tune it for retrieval
# and evaluate every retrieval direction on the validation split; linear-probe the pre-trained model; fine-tune the
# text decoder and decode the validation split from image, audio and image+audio; caption one file; generate images
# from the validation captions (text-to-image: contact sheet, R-precision) and from one caption; fine-tune it for VQA
# on the demo's VQA v2-format set and answer the validation questions written, spoken and both; export the
# retrieval, caption, text-to-image and VQA models as MINDIR graphs, then caption the file, draw the caption and
# answer a question from them; last, draw each training stage's losses (RUN_DIR/losses_<stage>.png) and each task's
# result beside its baselines (RUN_DIR/results.png, with the same as a Markdown table and RUN_DIR/results.json).
#
#   bash scripts/run_demo.sh [RUN_DIR]            (default: runs/demo)
#
# On a fresh clone it first makes .venv and installs requirements.txt and the pretrained weights into it
# (scripts/setup_env.sh; a second start skips that); with PYTHON set it runs that interpreter as it is instead.
# Running it again continues runs cut short by their time bounds from their newest checkpoints (up to
# train.max_steps), then evaluates again. Environment: PYTHON (default: .venv's, set up as above), DATA (demo data
# directory, default data/demo), MINUTES (pre-training time bound, default 9), RETRIEVAL_MINUTES and CAPTION_MINUTES
# (fine-tuning time bounds, default 3 and 6), DVAE_MINUTES (default 3), VQA_MINUTES (default 4). The defaults keep
# the whole demo near 50 minutes on 2 CPU cores.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # sets -euo pipefail, ROOT, PYTHONPATH
at_most_operands 1 "$@"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
else
  . "$ROOT/scripts/setup_env.sh"
fi
DATA="${DATA:-$ROOT/data/demo}"
RUN="${1:-$ROOT/runs/demo}"
MINUTES="${MINUTES:-9}"
RETRIEVAL_MINUTES="${RETRIEVAL_MINUTES:-3}"
CAPTION_MINUTES="${CAPTION_MINUTES:-6}"
DVAE_MINUTES="${DVAE_MINUTES:-3}"
VQA_MINUTES="${VQA_MINUTES:-4}"
START=$SECONDS
stage() {  # a stage's header, with the time since the demo started
  printf '== [%d:%02d] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"
}

if [ ! -f "$DATA/prepared/meta.json" ]; then
  stage "demo data: images, captions and speech from Debian packages -> $DATA"
  PYTHON="$PY" bash "$ROOT/scripts/prepare_demo_data.sh" "$DATA"
fi

stage "dVAE, stage 1 of the vision decoder (at most $DVAE_MINUTES minutes) -> $RUN/dvae"
"$PY" "$ROOT/train.py" --config "$ROOT/config/dvae_demo.yaml" --resume \
  --set "data.path=$DATA/prepared" "train.output_dir=$RUN/dvae" "train.max_minutes=$DVAE_MINUTES"
"$PY" "$ROOT/eval.py" --task dvae --ckpt "$RUN/dvae"
"$PY" -m src.tasks.dvae_codes --dvae "$RUN/dvae"   # pre-training reads them (DIR)

stage "pre-training (at most $MINUTES minutes) -> $RUN/pretrain"
"$PY" "$ROOT/train.py" --config "$ROOT/config/pretrain_demo.yaml" --resume \
  --set "data.path=$DATA/prepared" "train.output_dir=$RUN/pretrain" "train.max_minutes=$MINUTES"
"$PY" "$ROOT/scripts/show_losses.py" "$RUN/pretrain/train_log.jsonl"
echo "checkpoint: $(ls "$RUN"/pretrain/step_*.ckpt | tail -1)"

stage "retrieval fine-tuning (at most $RETRIEVAL_MINUTES minutes) -> $RUN/retrieval"
"$PY" "$ROOT/train.py" --config "$ROOT/config/retrieval_demo.yaml" --resume \
  --set "data.path=$DATA/prepared" "model.init_from=$RUN/pretrain" "train.output_dir=$RUN/retrieval" \
  "train.max_minutes=$RETRIEVAL_MINUTES"
"$PY" "$ROOT/scripts/show_losses.py" "$RUN/retrieval/train_log.jsonl"

stage "retrieval evaluation on the validation split (two-stage: embeddings, then cross-encoder rerank)"
"$PY" "$ROOT/eval.py" --task retrieval --ckpt "$RUN/retrieval"

stage "linear probe of the pre-trained model (frozen) on the manifest labels"
"$PY" "$ROOT/eval.py" --task probe --ckpt "$RUN/pretrain"

stage "text generation fine-tuning (at most $CAPTION_MINUTES minutes) -> $RUN/caption"
"$PY" "$ROOT/train.py" --config "$ROOT/config/caption_demo.yaml" --resume \
  --set "data.path=$DATA/prepared" "model.init_from=$RUN/pretrain" "train.output_dir=$RUN/caption" \
  "train.max_minutes=$CAPTION_MINUTES"
"$PY" "$ROOT/scripts/show_losses.py" "$RUN/caption/train_log.jsonl"

stage "text generation on the validation split (beam search with a key/value cache)"
for task in caption asr caption_ia; do
  "$PY" "$ROOT/eval.py" --task "$task" --ckpt "$RUN/caption"
done

stage "one file: infer.py on a validation image and its spoken caption"
"$PY" "$ROOT/infer.py" --ckpt "$RUN/caption" --image "$DATA/raw/images/emoji0007.png"
"$PY" "$ROOT/infer.py" --ckpt "$RUN/caption" --audio "$DATA/raw/audio/emoji0007-en.wav"

stage "text-to-image from the validation captions (vision decoder + dVAE; R-precision by the retrieval model)"
"$PY" "$ROOT/eval.py" --task t2i --ckpt "$RUN/pretrain" --limit 100 --set "t2i.scorer=$RUN/retrieval"
"$PY" "$ROOT/infer.py" --ckpt "$RUN/pretrain" --text "face with tears of joy" --out "$RUN/t2i_face_with_tears_of_joy.png"

if [ ! -f "$DATA/vqa/val/meta.json" ]; then
  stage "demo VQA set: four questions per image, ten answers each, every question spoken -> $DATA/vqa"
  PYTHON="$PY" bash "$ROOT/scripts/prepare_demo_vqa.sh" "$DATA"
fi
stage "VQA fine-tuning (at most $VQA_MINUTES minutes) -> $RUN/vqa"
"$PY" "$ROOT/train.py" --config "$ROOT/config/vqa_demo.yaml" --resume \
  --set "data.path=$DATA/vqa/train" "model.init_from=$RUN/pretrain" "train.output_dir=$RUN/vqa" \
  "train.max_minutes=$VQA_MINUTES"
"$PY" "$ROOT/scripts/show_losses.py" "$RUN/vqa/train_log.jsonl"

stage "VQA on the validation questions: written, spoken, both; beside the majority answers"
"$PY" "$ROOT/eval.py" --task vqa --ckpt "$RUN/vqa" --data "$DATA/vqa/val"
"$PY" "$ROOT/infer.py" --ckpt "$RUN/vqa" --image "$DATA/raw/images/emoji0007.png" \
  --question "which group is this emoji in?"

stage "export: a bundle of each of the retrieval, caption, text-to-image and VQA models -> $RUN/exports, then one"
echo "   caption, one image and one answer from the graphs"
"$PY" "$ROOT/export.py" --task retrieval --ckpt "$RUN/retrieval" --out "$RUN/exports/retrieval"
"$PY" "$ROOT/export.py" --task caption --ckpt "$RUN/caption" --out "$RUN/exports/caption"
"$PY" "$ROOT/export.py" --task t2i --ckpt "$RUN/pretrain" --out "$RUN/exports/t2i"
"$PY" "$ROOT/export.py" --task vqa --ckpt "$RUN/vqa" --out "$RUN/exports/vqa"
"$PY" "$ROOT/infer.py" --mindir "$RUN/exports/caption" --image "$DATA/raw/images/emoji0007.png"
"$PY" "$ROOT/infer.py" --mindir "$RUN/exports/t2i" --text "face with tears of joy" \
  --out "$RUN/exports/face_with_tears_of_joy.png"
"$PY" "$ROOT/infer.py" --mindir "$RUN/exports/vqa" --image "$DATA/raw/images/emoji0007.png" \
  --question "which group is this emoji in?"

stage "pictures: each training stage's losses against the step, each task's result beside its baselines"
for name in dvae pretrain retrieval caption vqa; do
  "$PY" "$ROOT/scripts/show_losses.py" "$RUN/$name/train_log.jsonl" --png "$RUN/losses_$name.png" | tail -n 1
done
"$PY" "$ROOT/scripts/show_results.py" "$RUN" --png "$RUN/results.png" --json "$RUN/results.json"
stage "done"
