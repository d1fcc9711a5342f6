#!/usr/bin/env bash
# Sourced by run_demo.sh and run_tests.sh: makes sure .venv (Python 3.11) holds what the project needs, and sets PY to
# its python. Installs only what is missing: a stamp per requirements set records what was installed, so a second run
# costs a second.
#
#   . scripts/setup_env.sh          # requirements.txt and the pretrained weights (the demo, training, evaluation)
#   . scripts/setup_env.sh test     # the same, then requirements-test.txt (the test suite's references)
#
# Environment: VENV (default .venv in the repository), PYTHON_FOR_VENV (the interpreter that creates it: python3.11,
# else python3).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

_install_once() {  # _install_once NAME PIP-ARGS...: pip install unless the stamp of NAME matches its files
  local name="$1"; shift
  local stamp="$VENV/.installed-$name"
  local digest
  digest="$(cat "$ROOT"/requirements*.txt | sha256sum | cut -c1-16)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    return 0
  fi
  echo "setup: pip install $* (into $VENV)" >&2
  "$VENV/bin/python" -m pip install -q "$@" && echo "$digest" > "$stamp"
}

if [ ! -x "$VENV/bin/python" ]; then
  maker="${PYTHON_FOR_VENV:-$(command -v python3.11 || command -v python3)}"
  echo "setup: creating $VENV with $maker" >&2
  "$maker" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
_torch_index() {  # PyTorch's CPU wheels (torch==...+cpu), when that index answers; else the configured indexes only
  local url="https://download.pytorch.org/whl/cpu"
  if "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('$url/torch/', timeout=5)" 2>/dev/null; then
    echo "--extra-index-url=$url"
  fi
}

_install_once base -r "$ROOT/requirements.txt" &&
  _install_once weights --no-deps -r "$ROOT/requirements-nodeps.txt" &&
  if [ "${1:-}" = "test" ]; then _install_once test $(_torch_index) -r "$ROOT/requirements-test.txt"; fi
PY="$VENV/bin/python"
