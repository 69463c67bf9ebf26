#!/usr/bin/env bash
# Creates .venv on first use and installs the course into it (used by `make lab` and `make test`).
#   scripts/setup.sh          the course (learners)
#   scripts/setup.sh dev      the course plus the test tools (tests, CI, maintainers)
# PyTorch comes first as a CPU build where one is available, so that the range in pyproject.toml
# does not pull a multi-GB CUDA build onto a laptop that cannot use it.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
PY="${PYTHON:-python3}"
VENV=.venv
stamp="$VENV/.installed${extra:+-$extra}"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi

"$PY" - <<'PYCHECK'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 13)):
    sys.exit(f"The course needs Python 3.10 to 3.13; {sys.executable} is {sys.version.split()[0]}. "
             "Set PYTHON=/path/to/python3.x and run make again.")
PYCHECK

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install --quiet --upgrade pip >/dev/null 2>&1 || true

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo ">> installing PyTorch (CPU build)"
  installed=0
  # 1. A CPU wheel shipped with this machine (pip's find-links), e.g. torch-2.13.0+cpu.
  for dir in ${PIP_FIND_LINKS:-}; do
    wheel=$(ls "$dir"/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)
    if [ -n "$wheel" ]; then
      version=$(basename "$wheel" | cut -d- -f2 | cut -d+ -f1)
      pip install --quiet "torch==$version" && installed=1 && break
    fi
  done
  # 2. On Linux, PyTorch's CPU index (macOS and Windows wheels on PyPI are CPU builds already).
  if [ "$installed" = 0 ] && [ "$(uname -s)" = "Linux" ]; then
    pip install --quiet --timeout 20 --retries 1 torch --index-url https://download.pytorch.org/whl/cpu \
      && installed=1 || echo ">> the CPU index is out of reach; using the default index"
  fi
fi

echo ">> installing the course${extra:+ with [$extra]}"
if [ -n "$extra" ]; then
  pip install --quiet -e ".[$extra]"
else
  pip install --quiet -e .
fi
touch "$stamp"
echo ">> ready: $VENV"
