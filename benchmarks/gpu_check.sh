#!/usr/bin/env bash
# The GPU check of issues 9 (fused cohorts) and 10 (GPU overhead): one script, under 5 minutes on an H200.
#
# 1. Here, once, from the repository root: prepare the packages the GPU machine lacks (optuna,
#    optuna-integration and their dependencies; ray is not needed and not unpacked):
#        bash ../shared/tools/device-wheels.sh          # writes .whl/ (git-ignored)
# 2. The device call: the `run` tool with carry [".whl"], timeout_s 330, and exactly this command:
#        bash benchmarks/gpu_check.sh
#    It installs .whl/ into /tmp/site, runs every stage of benchmarks/bench_gpu.py (each time-boxed,
#    280 s in all counted from this script's start, the install included; the fused stages call
#    tune(fuse=..., accelerator="gpu")) and writes $OUT/gpu-check.md, $OUT/results.jsonl, $OUT/logs/.
# 3. Here: copy $OUT/gpu-check.md (under the run's files_at) to benchmarks/results/DATE-gpu-check-h200.md.
#
# CPU smoke test (tiny sizes, every stage, the device's code paths; a few minutes on 2 busy cores):
#        nice -n 19 bash benchmarks/gpu_check.sh --smoke    # writes to $OUT, default /tmp/gpu-check-smoke
# Other arguments go to bench_gpu.py (--budget S, --only STAGE ...).
set -euo pipefail
started=$(date +%s)
cd "$(dirname "$0")/.."
smoke=0
for a in "$@"; do [[ $a == --smoke ]] && smoke=1; done
if [[ -z ${OUT:-} ]]; then
    OUT=$([[ $smoke == 1 ]] && echo /tmp/gpu-check-smoke || echo /tmp/gpu-check)
    rm -rf "$OUT"
fi
mkdir -p "$OUT"
# The checkout's own venv when there is one (here); the system Python 3.12 on the GPU machine.
PY=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import optuna, optuna_integration' 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "optuna is missing and there is no .whl/: run bash ../shared/tools/device-wheels.sh here and carry .whl" \
            | tee "$OUT/gpu-check.md"
        exit 1
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
    "$PY" -c 'import optuna, optuna_integration'
fi
echo "setup took $(( $(date +%s) - started )) s; python $("$PY" -V 2>&1)"
if [[ $smoke == 1 ]]; then
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    budget=900
else
    nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
    budget=280
fi
# --budget counts from the start of this script, install included.
"$PY" benchmarks/bench_gpu.py --out "$OUT" --budget "$budget" --started "$started" "$@" 2>&1 | tee "$OUT/log.txt"
