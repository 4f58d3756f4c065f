#!/usr/bin/env bash
# temporary device script (not committed)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
tar -xzf build-exp/bins.tar.gz
for m in deepseek-v2-lite olmoe-1b-7b qwen3-30b-a3b; do
  timeout 120 build-gpu/tools/ramp sweep --model $m --tokens 2048 --routing uniform --out $OUT/sweep-$m-2048.json > $OUT/sweep-$m.log 2>&1; echo "$m rc=$?" >> $OUT/sweep-$m.log
done
