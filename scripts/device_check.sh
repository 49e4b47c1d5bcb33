#!/usr/bin/env bash
# The GPU check in one call, for a session lent the GPU machine (docs/performance.md, "GPU"):
#
#   here:  scripts/device_pack.sh                        (once: .device/site.tar.gz, ~17 MB, git-ignored)
#   there: run(command="bash scripts/device_check.sh", carry=[".device"], timeout_s=600)
#
# Steps, each with its own time limit so that one hang cannot eat the lease, and each logged under $OUT:
#   1. unpack the carried packages, print the versions and the GPU;
#   2. a 1,200-frame toy run on the GPU with trainer.updates_per_graph=10 (run folder in /tmp/algd-logs): it must end
#      with exit 0;
#   3. make test-gpu's tests (gpu_tests.xml, JUnit);
#   4. python -m algd.bench --device cuda (bench_cuda.json): the learner, the toy loop, the PointButton1 loop at
#      S = 1 and 8, with 1 and 50 updates per CUDA graph.
# The exit status is the first failing step's (0 when all pass). STEPS="1 3" runs only those steps.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-logs/device}
STEPS=${STEPS:-"1 2 3 4"}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/algd-site:$PWD/src" MUJOCO_GL=${MUJOCO_GL:-egl}
PY=${PY:-python3}
status=0
step() {  # step <n> <seconds> <name> <command...>
  local n=$1 limit=$2 name=$3
  shift 3
  case " $STEPS " in *" $n "*) ;; *) return 0 ;; esac
  echo "=== step $n: $name (limit ${limit}s) $(date -u +%T)"
  local t0=$SECONDS rc=0
  timeout --signal=INT --kill-after=20 "$limit" "$@" || rc=$?
  echo "=== step $n: $name: exit $rc after $((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

want=$(cat .device/python_version 2>/dev/null || echo "?")
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want" != "$have" ]; then
  echo "error: .device/site.tar.gz was packed for Python $want, this machine runs $have: scripts/device_pack.sh $have"
  exit 2
fi
rm -rf /tmp/algd-site && mkdir -p /tmp/algd-site && tar -xzf .device/site.tar.gz -C /tmp/algd-site || exit 2
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
step 1 60 "versions" "$PY" -c '
import torch, torchrl, tensordict, lightning, hydra, numpy, mujoco, safety_gymnasium
print("python", __import__("sys").version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| torchrl", torchrl.__version__, "| tensordict", tensordict.__version__, "| lightning", lightning.__version__,
      "| hydra", hydra.__version__, "| numpy", numpy.__version__, "| mujoco", mujoco.__version__)
print("devices:", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or "none visible")'
step 2 120 "toy run on the GPU, 10 updates per graph" "$PY" -m algd.train env=toy total_frames=1200 warmup_frames=300 \
  trainer.accelerator=gpu trainer.updates_per_graph=10 paths.log_dir=/tmp/algd-logs
step 3 240 "GPU tests" "$PY" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -q --junitxml "$OUT/gpu_tests.xml"
step 4 300 "bench --device cuda" "$PY" -m algd.bench --device cuda --out "$OUT/bench_cuda.json"
echo "=== device check: exit $status $(date -u +%T)"
exit "$status"
