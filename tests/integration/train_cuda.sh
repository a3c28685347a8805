#!/usr/bin/env bash
# `vdm train` on a CUDA device, one rank (NCCL): the tiny quickstart for 20 steps with a
# checkpoint, a resume to 30 (GPU kernels are not bitwise reproducible, so this checks that the
# CUDA and CPU generator states restore, not equal parameters), the sample grid and the
# test-set bits/dim, then bf16 autocast, sampling the CUDA checkpoint on the CPU, and bf16 with
# channels-last. Exit 77 (skipped) where this build or machine has no
# CUDA device.
set -euo pipefail
VDM=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=16 train.device=cuda
        train.log_every=1 checkpoint.every=10 eval.num_samples=4 eval.steps=4 eval.bpd_samples=64
        eval.batch_size=32)
finite_losses() {  # metrics.jsonl, expected lines
  python3 - "$1" "$2" <<'PY' || fail "metrics: $1"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == int(sys.argv[2]), f"{len(rows)} lines, want {sys.argv[2]}"
assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows), rows[-1]
if len(rows) >= 20:  # learning: the last five steps below the first five
    first, last = (sum(r["loss"] for r in part) / 5 for part in (rows[:5], rows[-5:]))
    assert last < first, (first, last)
PY
}

set +e
"$VDM" train "${COMMON[@]}" train.steps=20 --run-dir "$WORK/run" > "$WORK/first.log" 2>&1
code=$?
set -e
if [ $code -ne 0 ] && grep -q "has no CUDA device" "$WORK/first.log"; then
  echo "skipped: $(grep -m1 'has no CUDA device' "$WORK/first.log")"
  exit 77
fi
[ $code -eq 0 ] || fail "CUDA run: $(tail -5 "$WORK/first.log")"
finite_losses "$WORK/run/metrics.jsonl" 20
[ -s "$WORK/run/samples/step_00000020.png" ] || fail "no sample grid"
grep -q '"bpd":' "$WORK/run/eval.jsonl" || fail "eval.jsonl has no bpd"
echo "20 CUDA steps: finite losses, sample grid, bits/dim"

"$VDM" train "${COMMON[@]}" train.steps=30 --run-dir "$WORK/run" > "$WORK/resume.log" 2>&1 \
  || fail "resume: $(tail -5 "$WORK/resume.log")"
grep -q "resumed from .*step_00000020" "$WORK/resume.log" || fail "did not resume: $(head "$WORK/resume.log")"
finite_losses "$WORK/run/metrics.jsonl" 30
echo "resume on CUDA: generator states restored, 30 steps in all"

"$VDM" train "${COMMON[@]}" train.steps=10 train.bf16=true eval.num_samples=0 eval.bpd=false \
  --run-dir "$WORK/bf16" > "$WORK/bf16.log" 2>&1 || fail "bf16: $(tail -5 "$WORK/bf16.log")"
finite_losses "$WORK/bf16/metrics.jsonl" 10
echo "bf16 autocast: finite losses"

# A checkpoint written on the GPU loads on the CPU (vdm sample reads it onto the CPU first).
"$VDM" sample "$WORK/run" --num 4 --steps 4 --device cpu --out "$WORK/cpu.png" > "$WORK/cpu.log" 2>&1 \
  || fail "sampling a CUDA checkpoint on the CPU: $(tail -5 "$WORK/cpu.log")"
[ -s "$WORK/cpu.png" ] || fail "no grid from the CPU"
echo "CUDA checkpoint sampled on the CPU"

"$VDM" train "${COMMON[@]}" train.steps=10 train.bf16=true train.channels_last=true eval.num_samples=0 \
  eval.bpd=false --run-dir "$WORK/nhwc" > "$WORK/nhwc.log" 2>&1 || fail "channels_last: $(tail -5 "$WORK/nhwc.log")"
finite_losses "$WORK/nhwc/metrics.jsonl" 10
echo "bf16 + channels_last: finite losses"
