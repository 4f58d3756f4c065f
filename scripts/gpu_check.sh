#!/usr/bin/env bash
# The one script the GPU machine runs: build, GPU tests, compute-sanitizer, benchmark.
# Everything is logged under $OUT (at most 8 files, the device tool's limit); the last lines
# printed are a short summary table. Exit status: 0 when every step passed.
#
#   OUT=/tmp/out scripts/gpu_check.sh
#   RAMP_CHECK_STEPS="build tests" OUT=/tmp/out scripts/gpu_check.sh   # a subset
#
# All steps together can exceed one device call's 10 minutes (a fresh build of the kernels,
# ctest's one process per test, the layer benchmark's ~3 minutes): split them with
# RAMP_CHECK_STEPS across calls on a warm machine, or carry a build.
#
# Build directory ($RAMP_BUILD_DIR, default build-gpu):
#   - a configured tree for this checkout  -> incremental build with every core
#   - only carried binaries (no CMakeCache) -> no build; the test binary runs one process per
#                                              suite instead of ctest
#   - anything else                         -> fresh configure (Ninja, Release) and build
# Knobs: RAMP_CHECK_STEPS (any of: build tests sanitizers python hf catalog bench; default all),
# RAMP_MEMCHECK_FILTER / RAMP_RACECHECK_FILTER (gtest filters), RAMP_BENCH_ARGS (replaces the
# default `ramp bench gemm` + `ramp bench layer` runs), RAMP_BENCH_LAYER_ARGS (extra options of
# the default layer run, e.g. "--models all --tokens all" for the whole matrix), RAMP_SWEEP_CELLS
# (the catalog step's cells, MODEL:TOKENS:ROUTING words).
set -u -o pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/out/gpu_check}
BUILD=${RAMP_BUILD_DIR:-build-gpu}
JOBS=$(nproc)
TEST_BINARY=$BUILD/tests/ramp_gpu_tests
API_TEST_BINARY=$BUILD/tests/ramp_api_gpu_tests
RAMP=$BUILD/tools/ramp
# Small cases that still reach every kernel: both prep paths (one CTA and chunked), bad ids,
# the layer and the grouped GEMM.
MEMCHECK_FILTER=${RAMP_MEMCHECK_FILTER:-'RoutingPrep.ForcedConfigPlansEqualHost:RoutingPrep.BadIds*:CudaLayer.MatchesCpuReference:CudaLayer.BadRouting*:CudaLayer.DecodePathBadRouting*:CudaGroupedGemm.*'}
# racecheck instruments every shared-memory access: the prep kernels and one small layer.
RACECHECK_FILTER=${RAMP_RACECHECK_FILTER:-'RoutingPrep.ForcedConfigPlansEqualHost:RoutingPrep.BadIds*:CudaLayer.BadRouting*:CudaLayer.DecodePathBadRouting*'}
STEPS=" ${RAMP_CHECK_STEPS:-build tests sanitizers python hf catalog bench} "
wants() { [[ "$STEPS" == *" $1 "* ]]; }
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
failed=0

record() {  # record STEP RESULT [NOTE]
  printf '%-22s %-8s %s\n' "$1" "$2" "${3:-}" | tee -a "$SUMMARY"
}

run_step() {  # run_step STEP LOG COMMAND...: runs, logs, records pass/FAIL and the seconds taken
  local step=$1 log=$2
  shift 2
  local start=$SECONDS
  "$@" >> "$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    record "$step" pass "$((SECONDS - start)) s, $(basename "$log")"
  else
    record "$step" FAIL "rc=$rc, $((SECONDS - start)) s, see $(basename "$log")"
    failed=1
  fi
  return $rc
}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -1
  cmake --version 2>&1 | head -1
} > "$OUT/machine.txt"
record machine info "$(sed -n 3p "$OUT/machine.txt")"

# 1. Build.
cache_home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
if ! wants build; then
  record build skipped "not in RAMP_CHECK_STEPS"
elif [ -f "$BUILD/CMakeCache.txt" ] && [ "$cache_home" = "$PWD" ]; then
  run_step build "$OUT/build.log" cmake --build "$BUILD" -j "$JOBS"
elif [ ! -f "$BUILD/CMakeCache.txt" ] && [ -x "$TEST_BINARY" ]; then
  record build skipped "carried binaries in $BUILD"
else
  # A cache from another checkout path cannot be reused; start over.
  rm -f "$BUILD/CMakeCache.txt"
  rm -rf "$BUILD/CMakeFiles"
  run_step configure "$OUT/build.log" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release &&
    run_step build "$OUT/build.log" cmake --build "$BUILD" -j "$JOBS"
fi

# 2. GPU tests (ctest when the tree is configured here, else the binary itself).
if ! wants tests; then
  record gpu-tests skipped "not in RAMP_CHECK_STEPS"
elif [ -f "$BUILD/CTestTestfile.cmake" ]; then
  run_step gpu-tests "$OUT/gpu_tests.log" \
    ctest --test-dir "$BUILD" -L gpu --output-on-failure -j 1 --timeout 300
  # ctest keeps passing tests' output to itself; the latency report is wanted anyway.
  "$TEST_BINARY" --gtest_filter='RoutingPrep.ReportLatency' >> "$OUT/gpu_tests.log" 2>&1
elif [ -x "$TEST_BINARY" ]; then
  # One process per suite, as ctest isolates tests: a crash costs only the rest of its suite.
  for suite in $("$TEST_BINARY" --gtest_list_tests | grep -v '^ ' | grep -v '^Running'); do
    run_step "gpu-tests ${suite%.}" "$OUT/gpu_tests.log" \
      timeout 300 "$TEST_BINARY" --gtest_filter="${suite}*"
  done
else
  record gpu-tests FAIL "no $TEST_BINARY"
  failed=1
fi
grep -h '\[ latency \]' "$OUT/gpu_tests.log" 2>/dev/null | sed 's/^.*\[ latency \] //' |
  while read -r line; do record latency "" "$line"; done

# The public C++ API on the device (its own binary: it links the bundled library). ctest
# already ran it when the tree was configured here.
if wants tests && [ ! -f "$BUILD/CTestTestfile.cmake" ] && [ -x "$API_TEST_BINARY" ]; then
  run_step api-gpu-tests "$OUT/gpu_tests.log" timeout 300 "$API_TEST_BINARY"
fi

# The README's main job, on the GPU: one olmoe-1b-7b layer, verified against fp64.
if wants tests && [ -x "$RAMP" ]; then
  run_step main-job "$OUT/gpu_tests.log" "$RAMP" run --backend cuda
fi

# 3. compute-sanitizer on small cases.
if wants sanitizers && [ -x "$TEST_BINARY" ]; then
  run_step sanitizer-memcheck "$OUT/sanitizer.log" \
    compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$TEST_BINARY" --gtest_filter="$MEMCHECK_FILTER"
  run_step sanitizer-racecheck "$OUT/sanitizer.log" \
    compute-sanitizer --tool racecheck --error-exitcode 99 \
    "$TEST_BINARY" --gtest_filter="$RACECHECK_FILTER"
fi

# 3b. The Python package, built here against this machine's python3 and torch (no network:
# --no-build-isolation uses the installed nanobind and scikit-build-core), then its tests,
# the CUDA ones included. Installed under /tmp: nothing is left in the tree.
if wants python; then
  run_step python-build "$OUT/python.log" timeout 420 env RAMP_ENABLE_CUDA=ON \
    CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" python3 -m pip install -q --no-build-isolation --no-deps --target /tmp/ramp_py . &&
    run_step python-tests "$OUT/python.log" env PYTHONPATH=/tmp/ramp_py \
      python3 -m pytest -q -p no:cacheprovider python/tests
fi

# 3c. The end-to-end check in Hugging Face transformers (issue #5): small Qwen3-MoE and OLMoE
# models with random weights, stock experts vs ramp_moe; logits, timings, JSON per model.
# Needs the package from the python step (same call or a warm machine that kept /tmp/ramp_py).
if wants hf; then
  for model in qwen3 olmoe; do
    run_step "hf-e2e $model" "$OUT/hf_e2e.log" env PYTHONPATH=/tmp/ramp_py \
      python3 bench/hf_e2e.py --model "$model" --out "$OUT/hf_e2e_$model.json"
  done
fi

# 3d. The kernel catalog: how many entries this build compiled, then `ramp sweep` (every
# compiled entry alone vs the builtin rule) on a few layer cells, merged into one JSON.
if wants catalog && [ -x "$RAMP" ]; then
  run_step catalog-configs "$OUT/catalog.log" "$RAMP" configs --compiled
  grep 'configs listed' "$OUT/catalog.log" | tail -1 | while read -r line; do record catalog "" "$line"; done
  sweep_dir=$(mktemp -d)
  for cell in ${RAMP_SWEEP_CELLS:-qwen3-30b-a3b:1:uniform qwen3-30b-a3b:8:uniform mixtral-8x7b:1:uniform deepseek-v2-lite:2048:uniform olmoe-1b-7b:2048:zipf1.0 qwen3-30b-a3b:8192:uniform}; do
    IFS=: read -r model tokens routing <<< "$cell"
    run_step "sweep $cell" "$OUT/catalog.log" "$RAMP" sweep --model "$model" --tokens "$tokens" \
      --routing "$routing" --out "$sweep_dir/$model-T$tokens-$routing.json"
  done
  python3 - "$sweep_dir" "$OUT/catalog_sweeps.json" <<'PY'
import json, pathlib, sys
runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))]
pathlib.Path(sys.argv[2]).write_text(json.dumps({"kind": "catalog-sweeps", "runs": runs}, indent=1))
PY
  rm -rf "$sweep_dir"
fi

# 4. Benchmark, when the command line has one. Results JSON go to $OUT (the device machine
# keeps nothing); copy them to bench/results/ by hand.
if wants bench && [ -x "$RAMP" ]; then
  if "$RAMP" --help 2>&1 | grep -qw bench; then
    if [ -n "${RAMP_BENCH_ARGS:-}" ]; then
      # shellcheck disable=SC2086  # RAMP_BENCH_ARGS is a list of words
      run_step bench "$OUT/bench.log" "$RAMP" bench ${RAMP_BENCH_ARGS}
    else
      run_step bench-gemm "$OUT/bench.log" "$RAMP" bench gemm --out "$OUT/bench_gemm.json"
      # shellcheck disable=SC2086  # RAMP_BENCH_LAYER_ARGS is a list of words
      run_step bench-layer "$OUT/bench.log" "$RAMP" bench layer --out "$OUT/bench_layer.json" \
        ${RAMP_BENCH_LAYER_ARGS:-}
    fi
    tail -n 30 "$OUT/bench.log"
  else
    record bench skipped "ramp has no bench subcommand"
  fi
fi

echo
echo "== summary =="
cat "$SUMMARY"
exit $failed
