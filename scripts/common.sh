#!/usr/bin/env bash
# Sourced by the scripts that take arguments: sets -euo pipefail, ROOT (the repository) and PYTHONPATH, and the
# argument checks below. Exit statuses, as every command of the project (src/commands.py): 0 done, 1 failed,
# 2 a usage or input error. A usage error prints the calling script's header comment (its usage) on stderr;
# -h or --help prints it on stdout and exits 0.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"  # MindSpore's C++ warnings off

usage() {  # [STATUS]: the header comment of the script run (USAGE_OF: of the one that delegated to it), then exit
  local status="${1:-2}" script="${USAGE_OF:-$0}"
  if [ "$status" -eq 0 ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$script"
  else
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$script" >&2
  fi
  exit "$status"
}

need_args() {  # MIN "$@": the usage and exit 2 when fewer than MIN arguments (options go to a Python parser)
  local min="$1"
  shift
  case "${1:-}" in -h|--help) usage 0 ;; esac
  [ $# -ge "$min" ] || usage 2
}

need_operands() {  # MIN "$@": as need_args, and the first MIN arguments are operands (paths, counts), not flags
  local min="$1" i
  shift
  need_args "$min" "$@"
  for ((i = 1; i <= min; i++)); do
    case "${!i}" in -*) usage 2 ;; esac
  done
}

at_most_operands() {  # MAX "$@": for a script of optional operands only: no flag and at most MAX arguments
  local max="$1" arg
  shift
  case "${1:-}" in -h|--help) usage 0 ;; esac
  [ $# -le "$max" ] || usage 2
  for arg in "$@"; do
    case "$arg" in -*) usage 2 ;; esac
  done
}
