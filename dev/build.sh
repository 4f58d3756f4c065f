#!/usr/bin/env bash
# Builds the static batching GPU test and benchmark without CMake (CI's CMake 3.25 does not know
# the CUDA20 dialect of nvcc 13): objects under build-dev/, binaries build-dev/gpu_tests and
# build-dev/bench_static_batching. Usage: dev/build.sh [tests|bench|all] (default all).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build-dev
mkdir -p $OUT/obj
what=${1:-all}
CXXFLAGS="-std=c++20 -O2 -Iinclude -Isrc -DNDEBUG -ffp-contract=off"
NVFLAGS="-std=c++20 -O3 -Iinclude -Isrc -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo -Xptxas=-warn-spills"
objs=()
compile_cxx() {  # src -> obj, only when stale
  local src=$1 obj=$OUT/obj/$(echo "$1" | tr / _).o
  if [[ ! -f $obj || $src -nt $obj ]]; then g++ $CXXFLAGS -c "$src" -o "$obj" & fi
  objs+=("$obj")
}
compile_cu() {
  local src=$1 obj=$OUT/obj/$(echo "$1" | tr / _).o
  local newest=$(ls -t "$src" src/cuda/*.cuh src/cuda/*.h src/cuda/ptx/*.h src/core/*.h src/dispatch/*.h | head -1)
  if [[ ! -f $obj || $newest -nt $obj ]]; then
    nvcc $NVFLAGS -c "$src" -o "$obj" -DRAMP_SHARED_DIR=\"\" &
  fi
  objs+=("$obj")
}
for f in src/core/*.cpp src/dispatch/*.cpp src/workloads/*.cpp src/cpu/*.cpp; do compile_cxx $f; done
compile_cu src/cuda/static_batching.cu
lib_objs=("${objs[@]}")
wait
if [[ $what == tests || $what == all ]]; then
  objs=()
  compile_cu tests/gpu/test_static_batching_gemm.cu
  wait
  nvcc -o $OUT/gpu_tests "${objs[@]}" "${lib_objs[@]}" -lgtest -lgtest_main -lpthread -cudart static
fi
if [[ $what == bench || $what == all ]]; then
  objs=()
  compile_cu dev/bench_static_batching.cu
  wait
  nvcc -o $OUT/bench_static_batching "${objs[@]}" "${lib_objs[@]}" -lcublas -lpthread -cudart static
fi
ls -la $OUT/gpu_tests $OUT/bench_static_batching 2>/dev/null || true
