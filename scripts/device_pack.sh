#!/usr/bin/env bash
# Pack what the lent GPU machine lacks into .device/site.tar.gz (git-ignored) for scripts/device_check.sh.
#
#   scripts/device_pack.sh [PYTHON_VERSION]      (default 3.12, the GPU machine's Python)
#
# The GPU machine's image (Python 3.12, torch 2.11, numpy 2.x, lightning 2.6.6, tensorboard, matplotlib, pytest)
# has no torchrl, tensordict, hydra or Safety-Gymnasium, and nothing can be fetched there. This downloads their
# wheels for that Python, installs them into one folder here, applies the safety-gymnasium fixes
# (scripts/patch_safety_gymnasium.py), drops what the checks never load (gymnasium-robotics' meshes, the skybox
# photos the fix replaces: ~70 MB) and writes one archive small enough to travel with the working tree.
# Versions are this project's pins (constraints.txt) except MuJoCo: the pinned 2.3.3 has no wheel for Python 3.12, so
# the GPU check runs MuJoCo 3.3.7. Navigation tasks (PointButton1) load and step under it, with the same initial
# layout but physics that differs from the first step on; the velocity tasks' XML uses global coordinates, which
# MuJoCo 3 refuses. Numbers from that stack are throughput, never results.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
pin() { grep -i -m1 "^$1==" constraints.txt || { echo "error: $1 is not pinned in constraints.txt" >&2; exit 2; }; }
PKGS=(
  "$(pin torchrl)" "$(pin tensordict)" "$(pin pyvers)" "$(pin hoptorch)" "$(pin orjson)"
  "$(pin hydra-core)" "$(pin omegaconf)"
  "$(pin safety-gymnasium)" "$(pin gymnasium)" "$(pin gymnasium-robotics)" "$(pin pettingzoo)"
  "$(pin xmltodict)" "$(pin jax-jumpy)" "$(pin farama-notifications)" "$(pin glfw)" "$(pin pyopengl)"
  "mujoco==3.3.7"
)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PIP=("$PY" -m pip -q --disable-pip-version-check)
TARGET=(--only-binary=:all: --python-version "$PYVER" --implementation cp)
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
  TARGET+=(--platform "$p")
done
echo "[pack] downloading ${#PKGS[@]} packages for CPython $PYVER ..."
"${PIP[@]}" download --no-deps "${TARGET[@]}" -d "$WORK/wheels" "${PKGS[@]}"
# antlr4-python3-runtime (hydra's parser) is published as a source archive only: build its pure-Python wheel here.
"${PIP[@]}" wheel --no-deps -w "$WORK/wheels" "$(pin antlr4-python3-runtime)"
"${PIP[@]}" install --no-deps --no-compile "${TARGET[@]}" --target "$WORK/site" "$WORK"/wheels/*.whl
PYTHONPATH="$WORK/site" "$PY" scripts/patch_safety_gymnasium.py
rm -rf "$WORK/site/gymnasium_robotics/envs/assets" "$WORK"/site/safety_gymnasium/assets/textures/star_hd.*.png
find "$WORK/site" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p .device
tar -C "$WORK/site" -czf .device/site.tar.gz .
echo "$PYVER" > .device/python_version
echo "[pack] .device/site.tar.gz: $(du -h .device/site.tar.gz | cut -f1), $(ls "$WORK/wheels" | wc -l) wheels for CPython $PYVER"
