#!/usr/bin/env bash
# bf16 autocast and channels-last on the CPU, through the code path a GPU run takes: 100 steps of
# the tiny preset in fp32, in bf16 (autocast around each forward only) and channels-last. bf16's
# loss curve must track fp32's and still fall; channels-last changes only the memory layout, so
# its losses must equal fp32's to float tolerance. Prints both curves' first and last values.
set -euo pipefail
VDM=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=16 train.threads=1
        train.log_every=1 train.steps=100 eval.num_samples=0 eval.bpd=false eval.fid=false)

for variant in fp32 bf16 nhwc; do
  extra=()
  [ "$variant" = bf16 ] && extra=(train.bf16=true)
  [ "$variant" = nhwc ] && extra=(train.channels_last=true)
  "$VDM" train "${COMMON[@]}" "${extra[@]}" --run-dir "$WORK/$variant" > "$WORK/$variant.log" 2>&1 \
    || fail "$variant run: $(tail -5 "$WORK/$variant.log")"
done

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def losses(name):
    with open(f"{work}/{name}/metrics.jsonl") as f:
        return [json.loads(line)["loss"] for line in f]
fp32, bf16, nhwc = losses("fp32"), losses("bf16"), losses("nhwc")
assert len(fp32) == len(bf16) == len(nhwc) == 100, (len(fp32), len(bf16), len(nhwc))
def mean(xs): return sum(xs) / len(xs)
for name, curve in (("fp32", fp32), ("bf16", bf16), ("channels_last", nhwc)):
    print(f"{name:14s} loss: step 1 {curve[0]:.5f}, steps 1-10 {mean(curve[:10]):.5f}, "
          f"steps 91-100 {mean(curve[-10:]):.5f}, step 100 {curve[-1]:.5f}")
# The same data and noise: bf16 may differ by rounding only, so windows of 10 steps agree closely.
for lo in range(0, 100, 10):
    a, b = mean(fp32[lo:lo + 10]), mean(bf16[lo:lo + 10])
    assert abs(a - b) <= 0.05 * abs(a), f"bf16 drifted from fp32 at steps {lo + 1}-{lo + 10}: {b} vs {a}"
assert mean(bf16[-10:]) < 0.9 * mean(bf16[:10]), "bf16 did not learn"
# Channels-last: the same arithmetic in another order; the first step is identical up to float
# rounding, and the curve stays within float noise amplified by 100 steps of training.
assert abs(nhwc[0] - fp32[0]) <= 1e-4 * abs(fp32[0]), (nhwc[0], fp32[0])
for lo in range(0, 100, 10):
    a, b = mean(fp32[lo:lo + 10]), mean(nhwc[lo:lo + 10])
    assert abs(a - b) <= 0.01 * abs(a), f"channels-last drifted at steps {lo + 1}-{lo + 10}: {b} vs {a}"
PY
echo "bf16 tracks fp32; channels-last equals fp32 to float tolerance"
