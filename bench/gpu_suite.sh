#!/usr/bin/env bash
# One device-machine call: GPU exactness + benchmarks. Usage (repo root, on the GPU):
#   bash bench/gpu_suite.sh OUTDIR [--reference .ref]
# Logs and JSON land in OUTDIR; the last lines printed are the summary.
set -u
OUT=${1:?outdir}; shift
REF=${2:-}
# unbuffered: a step killed by its timeout still leaves its progress in the log
export PYTHONPATH=. XLA_PYTHON_CLIENT_PREALLOCATE=false HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-dev} PYTHONUNBUFFERED=1
python -c "import jax; print('jax', jax.__version__, jax.devices())"
step() { local name=$1; shift; local t0=$(date +%s)
  timeout "${STEP_TIMEOUT:-400}" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc $(( $(date +%s) - t0 ))s: $(grep -E 'passed|failed|error' "$OUT/$name.log" | tail -1)"; }
step params python -m bench.fp4_probe --cases params --out "$OUT/params.json"
step gpu_tests python -m pytest -q -p no:cacheprovider --durations=15 -m gpu tests/
step golden_gpu python -m pytest -q -p no:cacheprovider tests/sc/test_xla.py tests/quant/test_quantize.py \
  tests/sc/test_nonfinite.py tests/_src/test_ieee.py tests/sc/test_mixed_lengths.py tests/quant/test_smoothquant.py \
  tests/fp4/test_xla.py tests/mp/test_reference.py
step memory python -m bench.memory --out "$OUT/memory.json"
step bench python -m bench ${REF:+--reference $REF} --out "$OUT/bench.json"
step mixed python -m bench.mixed --out "$OUT/mixed.json"
step kernels python -m bench.kernels --out "$OUT/kernels.json"
[ -f bench/fp4.py ] && step fp4 python -m bench.fp4 --out "$OUT/fp4.json"
tail -n 12 "$OUT/bench.log"; cat "$OUT/memory.log" | tail -2; tail -2 "$OUT/mixed.log"
[ -f "$OUT/fp4.log" ] && tail -n 12 "$OUT/fp4.log"
grep -E "FAILED|Error" "$OUT"/gpu_tests.log "$OUT"/golden_gpu.log | head -20
