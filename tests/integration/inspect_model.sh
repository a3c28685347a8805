#!/usr/bin/env bash
# `vdm inspect model` as a user runs it: each preset's size and cost at the config's data
# shape, and a clear exit-2 error for a resolution the network cannot halve.
set -euo pipefail
VDM=$1
SRC=$2
CFG=$SRC/configs/quickstart.yaml
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$VDM" inspect model "$CFG")
echo "$out" | grep -q "ADM U-Net 16px x1" || fail "quickstart description: $out"
params=$(echo "$out" | awk -F': ' '/^parameters:/ {print $2}')
[ "$params" -gt 100000 ] && [ "$params" -lt 5000000 ] || fail "quickstart parameters $params"

out=$("$VDM" inspect model "$CFG" model.preset=tiny data.resolution=16)
params=$(echo "$out" | awk -F': ' '/^parameters:/ {print $2}')
[ "$params" -lt 100000 ] || fail "tiny must stay under 100k parameters, has $params"

out=$("$VDM" inspect model "$CFG" model.preset=cifar10_vdm data.format=packed data.resolution=32)
echo "$out" | grep -q "VDM U-Net 32px x3, 32 blocks of 128 channels" || fail "cifar10_vdm: $out"
echo "$out" | grep -qE "^forward GFLOP per image: [0-9.]+" || fail "FLOPs line"

set +e
err=$("$VDM" inspect model "$CFG" model.preset=imagenet64_adm data.resolution=28 2>&1 >/dev/null)
code=$?
set -e
[ $code -eq 2 ] || fail "28 px through 4 levels: exit $code"
echo "$err" | grep -q "data.resolution=28" && echo "$err" | grep -q "multiple of 8" \
  || fail "message: $err"
echo "inspect_model: all checks passed"
