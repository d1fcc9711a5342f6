#!/usr/bin/env bash
# The test suite from a fresh clone: makes .venv with the project's and the tests' requirements when missing
# (scripts/setup_env.sh), then runs pytest. Arguments go to pytest: bash scripts/run_tests.sh -k caption -x
# Exit status as every command's: 0 all passed, 1 a test failed (or pytest itself did), 2 a usage error (pytest's
# own 4: an unknown flag; 5: no test selected).
# The tests run in parallel worker processes (pytest-xdist): one per CPU core, at most 4 and one per 5 GB of available
# memory; OPT_TEST_WORKERS=N sets how many (1: a single process).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/setup_env.sh" test
# Available memory is the kernel's MemAvailable (free + reclaimable page cache): free memory alone shrinks with
# every file read, and a reused machine would then run the suite in one process.
workers="${OPT_TEST_WORKERS:-$("$PY" -c "
import os, re
try:
    memory_gb = int(re.search(r'MemAvailable:\s+(\d+) kB', open('/proc/meminfo').read()).group(1)) / 2**20
except (OSError, AttributeError):
    memory_gb = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30
print(max(1, min(len(os.sched_getaffinity(0)), 4, int(memory_gb // 5))))")}"
parallel=()
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers" --dist load --maxschedchunk 2)  # a few tests at a time: the long ones, first, spread
fi
echo "running the tests in $workers process(es)" >&2
status=0
"$PY" -m pytest -q "${parallel[@]}" "$@" || status=$?
case "$status" in
  0 | 1) exit "$status" ;;
  4 | 5) exit 2 ;;
  *) exit 1 ;;
esac
