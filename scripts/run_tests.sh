#!/usr/bin/env bash
# The test suite from a fresh clone: makes .venv with the project's and the tests' requirements when missing
# (scripts/setup_env.sh), then runs pytest. Arguments go to pytest: bash scripts/run_tests.sh -k caption -x
# Exit status as every command's: 0 all passed, 1 a test failed (or pytest itself did), 2 a usage error (pytest's
# own 4: an unknown flag; 5: no test selected).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/setup_env.sh" test
status=0
"$PY" -m pytest -q "$@" || status=$?
case "$status" in
  0 | 1) exit "$status" ;;
  4 | 5) exit 2 ;;
  *) exit 1 ;;
esac
