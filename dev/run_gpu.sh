#!/usr/bin/env bash
# One device call: SASS check, GPU tests, sanitizer on a small case, seed004 timing sweep.
# Usage (device): dev/run_gpu.sh [test_filter] [bench args...]; logs under $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p $OUT
filter=${1:-*}
shift || true
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee $OUT/smi.txt
cuobjdump -sass build-dev/gpu_tests 2>/dev/null | grep -o "HGMMA\.[0-9A-Za-z.]*" | sort | uniq -c | tee $OUT/sass_hgmma.txt
echo "== tests"
timeout 120 build-dev/gpu_tests --gtest_filter="$filter" > $OUT/tests.log 2>&1
echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED|^\[==========\]|tests ran" $OUT/tests.log | head -40
grep -B2 -A6 "Failure" $OUT/tests.log | head -60
echo "== sanitizer"
timeout 90 compute-sanitizer --tool memcheck --print-limit 5 build-dev/gpu_tests \
  --gtest_filter='ForcedConfig/GroupedGemmTest.MatchesReference/E64_T64*:Layer/LayerGemmTest.*E60_T300_k4_zipf1_0_mixed*' > $OUT/sanitizer.log 2>&1
echo "sanitizer rc=$?"; tail -6 $OUT/sanitizer.log
echo "== bench"
timeout 60 build-dev/bench_static_batching "$@" 2>&1 | tee $OUT/bench.log
