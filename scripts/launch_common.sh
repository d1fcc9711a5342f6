# Shared by the run_distributed_*.sh launchers (sourced, not run): environment, log directory, the msrun launch and
# the failure report. Every launch passes --resume, so running the same command again continues the run.
# scripts/common.sh: set -euo pipefail, ROOT, PYTHONPATH, usage and the argument checks (need_args, need_operands)
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY="${PYTHON:-python}"
# msrun starts its workers with plain `python`: put the interpreter in use (a virtual environment's) first on PATH
PY_DIR="$(dirname "$(command -v "$PY")")"
export PATH="$PY_DIR:$PATH"
TAIL_LINES="${TAIL_LINES:-30}"

require_count() {  # NAME VALUE: a positive integer or exit 2
  if ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: $1 must be a positive integer, got '$2'" >&2
    exit 2
  fi
}

log_dir_of() {  # CONFIG [key=value ...] -> $LOG_DIR, default <train.output_dir>/logs
  if [ -n "${LOG_DIR:-}" ]; then
    echo "$LOG_DIR"
    return
  fi
  local out
  out="$("$PY" "$ROOT/train.py" --config "$1" --set "${@:2}" --show train.output_dir)" || exit 2
  echo "$out/logs"
}

report_failure() {  # LOG_DIR: the log tail of the rank that failed first
  local dir="$1" shown="" rank pid log
  # msrun names the process that failed first; each rank's log names its process (train.py prints it)
  pid="$(grep -ohE "Worker process [0-9]+ exit with exception" "$dir/msrun.log" 2>/dev/null | head -1 \
    | awk '{print $3}')"
  rank="$(grep -ohE "worker [0-9]+ is the first one timed out" "$dir"/*.log 2>/dev/null | head -1 | awk '{print $2}')"
  for log in $([ -z "$pid" ] || grep -lE "^rank [0-9]+ of [0-9]+: process $pid\$" "$dir"/worker_*.log) \
             ${rank:+"$dir/worker_$rank.log"} $(grep -lE "Traceback|^error:" "$dir"/worker_*.log 2>/dev/null); do
    case " $shown " in *" $log "*) continue ;; esac
    shown="$shown $log"
    echo "---- last $TAIL_LINES lines of $log ----" >&2
    tail -n "$TAIL_LINES" "$log" >&2
  done
  if [ -z "$shown" ]; then
    echo "(no rank log names the failure; all logs are in $dir)" >&2
  fi
}

msrun_train() {  # DEVICE LOCAL_WORKERS CONFIG [key=value ...]: train.py under msrun, NODES nodes of LOCAL_WORKERS
  local device="$1" local_workers="$2" config="$3"
  shift 3
  local nodes="${NODES:-1}" log_dir
  require_count NODES "$nodes"
  log_dir="$(log_dir_of "$config" "$@")"
  mkdir -p "$log_dir"
  echo "msrun: $((nodes * local_workers)) workers ($local_workers on this node, rank logs in $log_dir)"
  if ! msrun --worker_num="$((nodes * local_workers))" --local_worker_num="$local_workers" \
      --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-8118}" \
      ${NODE_RANK:+--node_rank="$NODE_RANK"} --log_dir="$log_dir" --join=True \
      --cluster_time_out="${CLUSTER_TIMEOUT:-600}" --tail_worker_log=0 \
      "$ROOT/train.py" --config "$config" --resume --set "train.device=$device" "$@" 2>&1 \
      | tee "$log_dir/msrun.log"; then
    echo "error: the distributed job failed" >&2
    report_failure "$log_dir"
    exit 1
  fi
}

start_rank() {  # RANK LOG_DIR COMMAND...: run COMMAND in the background, its output in LOG_DIR/worker_<RANK>.log
  local rank="$1" log_dir="$2"
  shift 2
  "$@" > "$log_dir/worker_$rank.log" 2>&1 &
  PIDS+=("$!")
  RANK_OF+=("$rank")
}

wait_ranks() {  # LOG_DIR: wait for the processes start_rank started; the first that fails stops the others
  local log_dir="$1" left="${#PIDS[@]}" i rc p
  trap 'kill "${PIDS[@]}" 2>/dev/null; exit 130' INT TERM
  while [ "$left" -gt 0 ]; do
    sleep 2
    for i in "${!PIDS[@]}"; do
      [ -n "${PIDS[$i]}" ] || continue
      if kill -0 "${PIDS[$i]}" 2>/dev/null; then continue; fi
      rc=0
      wait "${PIDS[$i]}" || rc=$?
      PIDS[$i]=""
      left=$((left - 1))
      if [ "$rc" -ne 0 ]; then
        echo "error: rank ${RANK_OF[$i]} exited with status $rc; stopping the other ranks" >&2
        for p in "${PIDS[@]}"; do [ -z "$p" ] || kill "$p" 2>/dev/null || true; done
        echo "---- last $TAIL_LINES lines of $log_dir/worker_${RANK_OF[$i]}.log ----" >&2
        tail -n "$TAIL_LINES" "$log_dir/worker_${RANK_OF[$i]}.log" >&2
        exit 1
      fi
    done
  done
}
