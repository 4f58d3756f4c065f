#!/usr/bin/env bash
# temporary device script (not committed)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
tar -xzf build-exp/bins.tar.gz
(timeout 200 build-gpu/tests/ramp_gpu_tests --gtest_filter='CudaLayer.*' --gtest_brief=1) > $OUT/check.log 2>&1; echo "layer tests rc=$?" >> $OUT/check.log
for m in qwen3-30b-a3b olmoe-1b-7b deepseek-v2-lite; do
  timeout 60 build-gpu/tools/ramp run --backend cuda --model $m --tokens 6 >> $OUT/check.log 2>&1; echo "run $m T=6 rc=$?" >> $OUT/check.log
done
timeout 120 build-gpu/tools/ramp bench layer --models qwen3-30b-a3b,olmoe-1b-7b,deepseek-v2-lite --tokens 5,6,7 --routings uniform,zipf1.0 --no-torch-peer --out $OUT/layer-t5-7.json >> $OUT/check.log 2>&1; echo "bench rc=$?" >> $OUT/check.log
