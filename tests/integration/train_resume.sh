#!/usr/bin/env bash
# `vdm train` on one rank, as a user runs it: a straight run (checkpoints written in the
# background, the default) and the same with checkpoint.async=false, which must write the same
# checkpoints; a background write that fails; SIGTERM while a slow write is in flight, then
# resumed; a run killed with SIGKILL after a checkpoint and resumed; a run killed in the middle
# of writing a checkpoint and resumed from the previous one. All must end with bitwise the same
# parameters. Then a bit-flipped checkpoint is reported and skipped, and a config that changes
# the model's shape is refused with the differing key named.
set -euo pipefail
VDM=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# No CONFIG: the built-in quickstart, shrunk to seconds. With dropout, whose masks come from
# LibTorch's default generator: a resumed run must find that stream where the checkpoint left it.
COMMON=(model.preset=tiny model.dropout=0.1 data.resolution=16 data.workers=1 train.batch_size=16 train.threads=1
        train.log_every=1 train.steps=30 checkpoint.every=10 eval.num_samples=4 eval.steps=4
        eval.bpd_samples=32 eval.batch_size=32)
same_params() {  # run dir A, run dir B, step
  local f
  for f in model.pt ema.pt objective.pt; do
    cmp -s "$1/checkpoints/$3/$f" "$2/checkpoints/$3/$f" || fail "$f differs between $1 and $2 at $3"
  done
}

"$VDM" train "${COMMON[@]}" --run-dir "$WORK/straight" > "$WORK/straight.log" 2>&1 \
  || fail "straight run: $(tail -5 "$WORK/straight.log")"
for f in config.yaml metrics.jsonl eval.jsonl samples/step_00000030.png checkpoints/step_00000030/manifest.json; do
  [ -s "$WORK/straight/$f" ] || fail "straight run left no $f"
done
[ "$(wc -l < "$WORK/straight/metrics.jsonl")" -eq 30 ] || fail "metrics.jsonl should have 30 lines"
# The checkpoints at steps 10 and 20 report their stall in the next record (log_every 1), only there.
for line in 11 21; do
  sed -n "${line}p" "$WORK/straight/metrics.jsonl" | grep -q '"checkpoint_stall_ms":' \
    || fail "metrics.jsonl line $line (after a checkpoint) has no checkpoint_stall_ms"
done
[ "$(grep -c '"checkpoint_stall_ms":' "$WORK/straight/metrics.jsonl")" -eq 2 ] \
  || fail "checkpoint_stall_ms should appear after the two checkpoints only"
grep -q '"bpd":' "$WORK/straight/eval.jsonl" || fail "eval.jsonl has no bpd"

# checkpoint.async (the default) and async: false write the same checkpoints; the step waits only
# for the snapshot in one, for the whole write in the other.
"$VDM" train "${COMMON[@]}" checkpoint.async=false eval.final=false --run-dir "$WORK/sync" > "$WORK/sync.log" 2>&1 \
  || fail "sync run: $(tail -5 "$WORK/sync.log")"
for step in step_00000020 step_00000030; do  # keep_last: 2
  for f in model.pt ema.pt objective.pt state.pt state.json; do
    cmp -s "$WORK/straight/checkpoints/$step/$f" "$WORK/sync/checkpoints/$step/$f" \
      || fail "$step/$f differs between the asynchronous and the synchronous checkpoint"
  done
done
grep -q "checkpoint step 10: step stalled [0-9]* ms (snapshot), written in [0-9]* ms in the background" \
  "$WORK/straight.log" || fail "no background write logged: $(grep checkpoint "$WORK/straight.log")"
grep -q "checkpoint step 10: step stalled [0-9]* ms, written in [0-9]* ms on the step" "$WORK/sync.log" \
  || fail "no synchronous write logged: $(grep checkpoint "$WORK/sync.log")"
echo "async and sync checkpoints: the same files"

# A write that fails in the background (the step-10 checkpoint) stops the run at the next sync
# point, the step-20 checkpoint, with the step that failed named.
set +e
VDM_FAULT_CHECKPOINT=fail_write "$VDM" train "${COMMON[@]}" eval.final=false --run-dir "$WORK/fail" > "$WORK/fail.log" 2>&1
code=$?
set -e
[ $code -ne 0 ] && [ $code -ne 75 ] || fail "a failed checkpoint write should fail the run, got exit $code"
grep -q "writing the checkpoint of step 10 failed: injected failure" "$WORK/fail.log" \
  || fail "failure message: $(tail -5 "$WORK/fail.log")"
[ "$(wc -l < "$WORK/fail/metrics.jsonl")" -eq 20 ] \
  || fail "the failure should surface at the step-20 checkpoint, not at $(wc -l < "$WORK/fail/metrics.jsonl")"
[ -z "$(ls "$WORK/fail/checkpoints")" ] || fail "a failed write left $(ls "$WORK/fail/checkpoints")"
echo "background write failure: reported at the next checkpoint"

# SIGTERM while checkpoints take 2 s to write: the exit (75) waits for the write in flight, so
# the checkpoint is committed before the run says so and exits; the resume is bitwise exact.
VDM_FAULT_CHECKPOINT=slow_write "$VDM" train "${COMMON[@]}" --run-dir "$WORK/term" > "$WORK/term.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ "$(cat "$WORK/term/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
  sleep 0.05
done
kill -TERM $pid
set +e
wait $pid
code=$?
set -e
[ $code -eq 75 ] || fail "SIGTERM should end the run with 75, got $code: $(tail -5 "$WORK/term.log")"
step=$(grep -o "checkpointing at step [0-9]*" "$WORK/term.log" | sed 's/.*step //')
[ -n "$step" ] || fail "no stop message: $(cat "$WORK/term.log")"
written=$(grep -n "checkpoint step $step: step stalled [0-9]* ms (snapshot), written in [0-9]* ms in the background" \
  "$WORK/term.log" | cut -d: -f1)
committed=$(grep -n "checkpoint of step $step committed; exiting with code 75" "$WORK/term.log" | cut -d: -f1)
[ -n "$written" ] && [ -n "$committed" ] && [ "$written" -lt "$committed" ] \
  || fail "the run did not wait for the write of step $step before exiting: $(grep -i checkpoint "$WORK/term.log")"
[ -e "$WORK/term/checkpoints/$(printf step_%08d "$step")/manifest.json" ] || fail "no checkpoint at step $step"
"$VDM" train "${COMMON[@]}" --run-dir "$WORK/term" > "$WORK/term2.log" 2>&1 || fail "resume after SIGTERM: $(tail -5 "$WORK/term2.log")"
grep -q "resumed from .*$(printf step_%08d "$step")" "$WORK/term2.log" || fail "did not resume from step $step"
same_params "$WORK/straight" "$WORK/term" step_00000030
echo "SIGTERM during a slow background write: waited for it, exit 75, resume bitwise identical"

# SIGKILL once the step-10 checkpoint is complete, then resume.
"$VDM" train "${COMMON[@]}" --run-dir "$WORK/killed" > "$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ -e "$WORK/killed/checkpoints/step_00000010/manifest.json" ] && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null && fail "the run finished before it could be killed"
[ ! -e "$WORK/killed/checkpoints/step_00000030" ] || fail "killed too late to test anything"
"$VDM" train "${COMMON[@]}" --run-dir "$WORK/killed" > "$WORK/resumed.log" 2>&1 \
  || fail "resume: $(tail -5 "$WORK/resumed.log")"
grep -q "resumed from .*step_000000[12]0" "$WORK/resumed.log" || fail "did not resume: $(head "$WORK/resumed.log")"
same_params "$WORK/straight" "$WORK/killed" step_00000030
[ "$(wc -l < "$WORK/killed/metrics.jsonl")" -eq 30 ] || fail "resumed metrics.jsonl should read as one run of 30 lines"
echo "kill -9 + resume: bitwise identical"

# Killed while writing the step-20 checkpoint (data written, manifest not yet): step 10 stays
# the newest complete one and is used.
"$VDM" train "${COMMON[@]}" train.steps=10 --run-dir "$WORK/torn" > "$WORK/torn1.log" 2>&1 || fail "torn run 1"
set +e
VDM_FAULT_CHECKPOINT=before_manifest "$VDM" train "${COMMON[@]}" --run-dir "$WORK/torn" > "$WORK/torn2.log" 2>&1
code=$?
set -e
[ $code -eq 137 ] || fail "fault injection should kill the run (exit 137), got $code"
[ ! -e "$WORK/torn/checkpoints/step_00000020" ] || fail "a torn checkpoint looks complete"
grep -q step_00000010 "$WORK/torn/checkpoints/latest" || fail "latest moved past the torn checkpoint"
"$VDM" train "${COMMON[@]}" --run-dir "$WORK/torn" > "$WORK/torn3.log" 2>&1 || fail "torn resume: $(tail -5 "$WORK/torn3.log")"
grep -q "resumed from .*step_00000010" "$WORK/torn3.log" || fail "torn: did not resume from step 10"
same_params "$WORK/straight" "$WORK/torn" step_00000030
echo "kill during checkpoint write: previous checkpoint used, bitwise identical"

# One flipped bit in the newest checkpoint: reported, and the one before it is used.
python3 - "$WORK/killed/checkpoints/step_00000030/model.pt" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 0x10; open(p, 'wb').write(b)
PY
"$VDM" train "${COMMON[@]}" train.steps=32 --run-dir "$WORK/killed" > "$WORK/flip.log" 2>&1 || fail "bit flip: $(tail -5 "$WORK/flip.log")"
grep -q "step_00000030.*corrupt.*model.pt" "$WORK/flip.log" || fail "corruption not reported: $(head "$WORK/flip.log")"
grep -q "resumed from .*step_00000020" "$WORK/flip.log" || fail "bit flip: did not fall back to step 20"
echo "bit-flipped checkpoint: reported, previous one used"

# A config that changes parameter shapes cannot resume; the message names the key.
set +e
"$VDM" train "${COMMON[@]}" model.channels=16 train.steps=40 --run-dir "$WORK/straight" > "$WORK/shape.log" 2>&1
code=$?
set -e
[ $code -ne 0 ] || fail "a changed model shape was resumed"
grep -q "model.channels: checkpoint 8, now 16" "$WORK/shape.log" || fail "shape change message: $(cat "$WORK/shape.log")"

# A run that really diverges (lr 1e30 without clipping: the first update makes the weights huge,
# every later loss is infinite), at most 3 non-finite steps in a row: skipped, counted, then a
# checkpoint and exit code 4 with the advice.
set +e
"$VDM" train "${COMMON[@]}" train.max_nonfinite_steps=3 train.lr=1e30 train.grad_clip=0 --run-dir "$WORK/nan" \
  > "$WORK/nan.log" 2>&1
code=$?
set -e
[ $code -eq 4 ] || fail "diverged run should exit 4, got $code: $(tail -3 "$WORK/nan.log")"
grep -q "3 non-finite steps in a row: stopping at step 4" "$WORK/nan.log" || fail "no divergence message: $(tail -3 "$WORK/nan.log")"
[ -e "$WORK/nan/checkpoints/step_00000004/manifest.json" ] || fail "no checkpoint when stopping"
grep -q '"skipped_steps":3' "$WORK/nan/metrics.jsonl" || fail "skipped steps not counted in metrics.jsonl"
echo "non-finite guard: 3 skipped steps, checkpoint, exit 4"
echo "train_resume: all checks passed"
