#!/usr/bin/env bash
# `vdm train` under mpiexec -np 2: a straight run; the same run with one rank killed by SIGKILL
# after a checkpoint, then resumed; and the same run with SIGUSR2 sent to rank 1 only, where
# both ranks must agree to checkpoint at the same step, wait for rank 0's (slow, background)
# write and exit with the requeue code (75), then resume. All three end with bitwise the same
# parameters.
set -euo pipefail
VDM=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=8 train.threads=1
        train.log_every=1 train.steps=30 checkpoint.every=10 eval.num_samples=4 eval.steps=4
        eval.bpd_samples=32 eval.batch_size=32 distributed.timeout_s=60)
MPI=(mpiexec -np 2 --oversubscribe)
same_params() {
  local f
  for f in model.pt ema.pt objective.pt; do
    cmp -s "$1/checkpoints/$3/$f" "$2/checkpoints/$3/$f" || fail "$f differs between $1 and $2 at $3"
  done
}
rank_pid() {  # pid of `timeout mpiexec ...`, rank -> that rank's pid
  local p
  for p in $(pgrep -P "$(pgrep -P "$1")"); do
    tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo $p; return; }
  done
}
wait_for() {  # file, what
  for _ in $(seq 1200); do [ -e "$1" ] && return; sleep 0.05; done
  fail "timed out waiting for $2"
}

timeout 300 "${MPI[@]}" "$VDM" train "${COMMON[@]}" --run-dir "$WORK/straight" > "$WORK/straight.log" 2>&1 \
  || fail "straight run: $(tail -5 "$WORK/straight.log")"
grep -q "2 rank(s) x batch 8" "$WORK/straight.log" || fail "not a 2-rank run: $(head "$WORK/straight.log")"

# SIGKILL to rank 1 after the step-10 checkpoint: the job dies; resuming gives the same result.
timeout 300 "${MPI[@]}" "$VDM" train "${COMMON[@]}" --run-dir "$WORK/killed" > "$WORK/killed.log" 2>&1 &
mpi=$!
wait_for "$WORK/killed/checkpoints/step_00000010/manifest.json" "the step-10 checkpoint"
kill -9 "$(rank_pid $mpi 1)"
wait $mpi 2>/dev/null && fail "the killed job exited 0"
[ ! -e "$WORK/killed/checkpoints/step_00000030" ] || fail "killed too late to test anything"
timeout 300 "${MPI[@]}" "$VDM" train "${COMMON[@]}" --run-dir "$WORK/killed" > "$WORK/resumed.log" 2>&1 \
  || fail "resume: $(tail -5 "$WORK/resumed.log")"
grep -q "resumed from" "$WORK/resumed.log" || fail "did not resume"
same_params "$WORK/straight" "$WORK/killed" step_00000030
echo "2 ranks, kill -9 + resume: bitwise identical"

# SIGUSR2 to rank 1 only, no periodic checkpoints: both ranks stop at the same step. Rank 0
# writes the checkpoint in the background, slowly (2 s): no rank exits before it is committed.
VDM_FAULT_CHECKPOINT=slow_write timeout 300 "${MPI[@]}" "$VDM" train "${COMMON[@]}" checkpoint.every=0 \
  --run-dir "$WORK/preempt" > "$WORK/preempt.log" 2>&1 &
mpi=$!
for _ in $(seq 1200); do
  [ "$(cat "$WORK/preempt/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
  sleep 0.05
done
kill -USR2 "$(rank_pid $mpi 1)"
set +e
wait $mpi
code=$?
set -e
[ $code -eq 75 ] || fail "preempted job should exit 75, got $code: $(tail -5 "$WORK/preempt.log")"
steps=$(grep -o "rank [01]/2.*checkpointing at step [0-9]*" "$WORK/preempt.log" | sed 's/.*step //' | sort -u)
[ "$(grep -c "checkpointing at step" "$WORK/preempt.log")" -eq 2 ] || fail "both ranks should report: $(cat "$WORK/preempt.log")"
[ "$(echo "$steps" | wc -l)" -eq 1 ] || fail "ranks stopped at different steps: $steps"
step=$(printf "step_%08d" "$steps")
[ -e "$WORK/preempt/checkpoints/$step/manifest.json" ] || fail "no checkpoint at $step"
written=$(grep -n "checkpoint step $steps: step stalled [0-9]* ms (snapshot), written in [0-9]* ms in the background" \
  "$WORK/preempt.log" | cut -d: -f1)
committed=$(grep -n "checkpoint of step $steps committed; exiting with code 75" "$WORK/preempt.log" | cut -d: -f1)
[ -n "$written" ] && [ -n "$committed" ] && [ "$written" -lt "$committed" ] \
  || fail "the job did not wait for the background write: $(grep -i checkpoint "$WORK/preempt.log")"
timeout 300 "${MPI[@]}" "$VDM" train "${COMMON[@]}" checkpoint.every=0 --run-dir "$WORK/preempt" > "$WORK/preempt2.log" 2>&1 \
  || fail "resume after preemption: $(tail -5 "$WORK/preempt2.log")"
grep -q "resumed from .*$step" "$WORK/preempt2.log" || fail "did not resume from $step"
same_params "$WORK/straight" "$WORK/preempt" step_00000030
echo "SIGUSR2 to rank 1: both ranks checkpointed at step $steps, exit 75, resume bitwise identical"

# Another world size: the 2-rank checkpoint continues on 3 ranks; the global sample stream goes
# on from sample 30 x 2 x 8 = 480, so step 35 has consumed 480 + 5 x 3 x 8 = 600.
timeout 300 mpiexec -np 3 --oversubscribe "$VDM" train "${COMMON[@]}" checkpoint.every=0 train.steps=35 \
  --run-dir "$WORK/preempt" > "$WORK/resize.log" 2>&1 || fail "3-rank resume: $(tail -5 "$WORK/resize.log")"
grep -q "resuming a 2-rank checkpoint on 3 rank" "$WORK/resize.log" || fail "no world-size message"
grep -q '"consumed": 600' "$WORK/preempt/checkpoints/step_00000035/state.json" \
  || fail "sample stream did not continue: $(cat "$WORK/preempt/checkpoints/step_00000035/state.json")"
echo "2-rank checkpoint resumed on 3 ranks: sample stream continues"
echo "train_multirank: all checks passed"
