#!/usr/bin/env bash
# temporary device script (not committed)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
tar -xzf build-exp/bins.tar.gz
V=("rule:build-gpu/tools/ramp" "forced:build-gpu/tools/ramp --decode-max-tokens 16")
n=${#V[@]}
for r in 1 2 3; do
  for i in $(seq 0 $((n-1))); do
    v=${V[$(( (i + r) % n ))]}
    l=${v%%:*}; c=${v#*:}
    bin=${c%% *}; opts=${c#"$bin"}
    timeout 120 $bin bench layer $opts --models qwen3-30b-a3b,olmoe-1b-7b,deepseek-v2-lite,gpt-oss-120b --tokens 4,6,8,16 --routings uniform,zipf1.0 --no-torch-peer --out $OUT/ab-$l-$r.json >> $OUT/ab.log 2>&1 || echo "layer $l $r failed" >> $OUT/ab.log
  done
done
python3 dev/ab_compare.py $OUT rule forced > $OUT/compare.txt 2>&1
cd $OUT && tar -czf ab.tar.gz ab-*.json && rm ab-*.json
