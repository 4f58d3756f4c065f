#!/usr/bin/env bash
# Per-kernel times of the layer pipeline (prep, GEMM1, GEMM2, combine) under ncu, for a few
# layer cells: where the layer's time goes. ncu flushes caches before each kernel (cold L2, as
# the benchmark) and runs at the boost clock (--clock-control none).
#   OUT=/tmp/out RAMP=build-gpu/tools/ramp dev/layer_breakdown.sh "qwen3-30b-a3b olmoe-1b-7b" 1,512,2048,8192 [uniform,zipf1.0]
set -u
RAMP=${RAMP:-build-gpu/tools/ramp}
OUT=${OUT:-/tmp/out}
MODELS=${1:-qwen3-30b-a3b}
TOKENS=${2:-1,512,2048,8192}
ROUTINGS=${3:-uniform}
mkdir -p "$OUT"
for model in $MODELS; do
  ncu --clock-control none --graph-profiling node \
    --kernel-name 'regex:static_batched|prep_one|chunk_hist|scan_chunk|plan_from|scatter_chunks|combine_slots' \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum \
    --csv --page raw \
    "$RAMP" bench layer --models "$model" --tokens "$TOKENS" --routings "$ROUTINGS" \
      --warmup 0 --repeats 1 --no-torch-peer --no-cublas-peer --verify-tokens 1 \
      --out "$OUT/ncu-bench-$model.json" > "$OUT/ncu-$model.csv" 2> "$OUT/ncu-$model.err"
done
