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
echo "$err" | grep -q "model.channel_mult" || fail "the message names the key: $err"

# Architectures from the config: a preset's defaults with keys overridden, printed resolved.
out=$("$VDM" inspect model "$CFG" model.arch=adm "model.channel_mult=[1,2,4]" "model.attention_resolutions=[4]" \
      model.num_res_blocks=2)
echo "$out" | grep -q "channel_mult: \[1, 2, 4\]" || fail "resolved channel_mult: $out"
echo "$out" | grep -q "attention_resolutions: \[4\]" || fail "resolved attention: $out"
echo "$out" | grep -q "num_res_blocks: 2" || fail "resolved num_res_blocks: $out"
echo "$out" | grep -q "mult \[1,2,4\], 2 res blocks/level, attention at \[4\] px" || fail "network: $out"
out=$("$VDM" inspect model "$CFG" model.arch=vdm model.num_blocks=8)
echo "$out" | grep -q "arch: vdm" || fail "arch: $out"
echo "$out" | grep -q "VDM U-Net 16px x1, 8 blocks of" || fail "vdm network: $out"
set +e
err=$("$VDM" inspect model "$CFG" model.num_blocks=8 2>&1 >/dev/null)
code=$?
set -e
[ $code -eq 2 ] && echo "$err" | grep -q "model.num_blocks: unknown key" || fail "vdm key on adm: $code $err"
echo "inspect_model: all checks passed"
