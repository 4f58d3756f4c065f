#!/usr/bin/env bash
# Same-run A/B(/C...) of `ramp` binaries or options on the layer benchmark: runs every variant
# once per round, rounds alternating (so drift and clocks hit all alike), each a
# `ramp bench layer` without the torch peer, and writes $OUT/ab-<label>-<round>.json (logs
# appended to $OUT/ab.log: the device tool brings back at most 8 files). A variant is
# LABEL=COMMAND, the command being a ramp binary with any extra options of `bench layer`
# (word-split; they are placed after `bench layer`).
# Compare with dev/ab_compare.py (best of the rounds).
#   OUT=/tmp/out dev/ab_layer.sh base=build-head/ramp new=build-gpu/tools/ramp \
#     "off=build-gpu/tools/ramp --no-prefetch" -- --models all --tokens 1,512 --routings uniform
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
variants=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do variants+=("$1"); shift; done
[ $# -gt 0 ] && shift
rounds=${AB_ROUNDS:-2}
for round in $(seq 1 "$rounds"); do
  for variant in "${variants[@]}"; do
    label=${variant%%=*} command=${variant#*=}
    binary=${command%% *} options=${command#"$binary"}
    # The variant's options go after `bench layer` (ramp takes no options before a command).
    # shellcheck disable=SC2086  # the options are words, split on purpose
    $binary bench layer $options --no-torch-peer --out "$OUT/ab-$label-$round.json" "$@" \
      >> "$OUT/ab.log" 2>&1 || echo "ab: $label round $round failed (rc=$?)" | tee -a "$OUT/ab.log"
  done
done
