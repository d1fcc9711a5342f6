#!/usr/bin/env bash
# Sourced by the scripts that take arguments: sets -euo pipefail, ROOT (the repository) and PYTHONPATH, and
# `need_args MIN "$@"` prints the calling script's header comment and exits 2 when it got fewer than MIN arguments.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GLOG_v="${GLOG_v:-3}"  # MindSpore's C++ warnings off

need_args() {
  local min="$1"
  shift
  if [ $# -lt "$min" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
  fi
}
