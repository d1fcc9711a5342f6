#!/usr/bin/env bash
# The test suite from a fresh clone: makes .venv with the project's and the tests' requirements when missing
# (scripts/setup_env.sh), then runs pytest. Arguments go to pytest: bash scripts/run_tests.sh -k caption -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/setup_env.sh" test
exec "$PY" -m pytest -q "$@"
