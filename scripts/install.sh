#!/usr/bin/env bash
# Create or update the project's virtual environment (idempotent).
#   1. venv with Python 3.11
#   2. the project and its pinned dependencies (constraints.txt on every pip call)
#   3. safety-gymnasium 1.0.0 with --no-deps (its pygame==2.1.0 pin has no wheel for Python 3.11)
#   4. the two safety-gymnasium fixes (Python-3.11 dataclass defaults, fast resets) -- scripts/patch_safety_gymnasium.py
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"algd needs Python 3.11, found {sys.version.split()[0]}"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
export PIP_CONSTRAINT="$PWD/constraints.txt"
echo "[install] dependencies (pinned by constraints.txt) ..."
"${PIP[@]}" install -c constraints.txt -e ".[dev]"
echo "[install] safety-gymnasium 1.0.0 (--no-deps) ..."
"${PIP[@]}" install -c constraints.txt --no-deps safety-gymnasium==1.0.0
echo "[install] patching safety-gymnasium for Python 3.11 and fast resets ..."
"$VENV/bin/python" scripts/patch_safety_gymnasium.py
"$VENV/bin/python" -c "from algd.envs.safety_gym import import_safety_gymnasium; import_safety_gymnasium(); import torchrl, lightning, hydra; print('[install] ok: torch', __import__('torch').__version__, '| torchrl', torchrl.__version__, '| lightning', lightning.__version__)"
