#!/usr/bin/env bash
# One device call (~3 min): the decode design split along I (kernel_notes.md, session 19) next
# to the library's decode path on the same machine.
#   1. dev/decode_split_i_bench.cu: its data movement alone (no math), every variant
#   2. dev/decode_split_i_layer.cu: the prototype layer, checked against fp64, timed
#   3. ramp bench layer: the library's decode path at the same T (graph replay, cold L2)
# Usage (device): OUT=/tmp/out RAMP=path/to/ramp dev/run_decode_split_i.sh
# Logs: $OUT/decode_split_i_{bench,layer}.txt, $OUT/decode_layer_library.{json,txt}.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
RAMP=${RAMP:-build-gpu/tools/ramp}
mkdir -p "$OUT"
BUILD=$(mktemp -d)
NVCC_FLAGS=(-std=c++17 -O3 -gencode arch=compute_90a,code=sm_90a -Isrc)
status=0
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit --format=csv \
  > "$OUT/decode_split_i_gpu.txt" 2>&1
for program in decode_split_i_bench decode_split_i_layer; do
  if ! nvcc "${NVCC_FLAGS[@]}" "dev/$program.cu" -o "$BUILD/$program" > "$OUT/$program.txt" 2>&1; then
    echo "$program: build failed (see $OUT/$program.txt)"
    status=1
    continue
  fi
  timeout 240 "$BUILD/$program" >> "$OUT/$program.txt" 2>&1
  rc=$?
  echo "$program: rc=$rc"
  [ $rc -eq 0 ] || status=1
  tail -n 25 "$OUT/$program.txt"
done
if [ -x "$RAMP" ]; then
  timeout 240 "$RAMP" bench layer --models qwen3-30b-a3b,olmoe-1b-7b,deepseek-v2-lite \
    --tokens 1,2,4,8 --routings uniform --no-torch-peer \
    --out "$OUT/decode_layer_library.json" > "$OUT/decode_layer_library.txt" 2>&1
  echo "ramp bench layer: rc=$?"
  tail -n 20 "$OUT/decode_layer_library.txt"
else
  echo "no ramp binary at $RAMP: the library's decode path was not measured"
  status=1
fi
exit $status
