#!/usr/bin/env bash
# The collective watchdog times collectives, not the work between them: a 2-rank run whose
# timeout (distributed.timeout_s=5) is far shorter than its end-of-training evaluation (rank 0
# trains the built-in FID feature net while rank 1 waits; bits/dim over 6000 test images) must
# finish and report FID and bits/dim. Then a rank that stops taking part in collectives
# (SIGSTOP) must still be caught: the job ends with the watchdog's message within seconds.
set -euo pipefail
VDM=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
FM=/usr/share/datasets/fashion-mnist
[ -d "$FM" ] || { echo "watchdog_evaluation: SKIPPED ($FM missing; apt-get install dataset-fashion-mnist)"; exit 77; }
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=8 train.threads=1
        train.log_every=1 eval.num_samples=4 eval.steps=4 eval.batch_size=64 distributed.timeout_s=5)
MPI=(mpiexec -np 2 --oversubscribe)

start=$(date +%s)
timeout 600 "${MPI[@]}" "$VDM" train "${COMMON[@]}" train.steps=4 eval.bpd_samples=6000 \
  eval.fid.enabled=true eval.fid.features=builtin eval.fid.num_samples=16 \
  --run-dir "$WORK/run" > "$WORK/run.log" 2>&1 || fail "healthy run aborted: $(tail -5 "$WORK/run.log")"
took=$(( $(date +%s) - start ))
grep -q '"fid":' "$WORK/run/eval.jsonl" || fail "eval.jsonl has no fid"
grep -q '"bpd":' "$WORK/run/eval.jsonl" || fail "eval.jsonl has no bpd"
(( took > 15 )) || fail "the run took ${took}s: too short to show that long evaluation work is not timed"
echo "healthy: ${took}s with a 5 s collective timeout"

# A rank frozen between collectives: rank 1 is stopped; rank 0 waits in the next collective.
timeout 300 "${MPI[@]}" "$VDM" train "${COMMON[@]}" train.steps=100000 eval.bpd=false \
  --run-dir "$WORK/stuck" > "$WORK/stuck.log" 2>&1 &
job=$!
for _ in $(seq 600); do grep -q "step 5/" "$WORK/stuck.log" 2>/dev/null && break; sleep 0.1; done
victim=""
for p in $(pgrep -f "$WORK/stuck"); do
  tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$p
done
[ -n "$victim" ] || fail "rank 1 not found"
stopped=$(date +%s)
kill -STOP "$victim"
rc=0
wait $job || rc=$?
kill -CONT "$victim" 2>/dev/null || true
(( rc != 0 )) || fail "the job with a frozen rank ended with exit 0"
(( rc != 124 )) || fail "the watchdog did not end the job (timeout killed it)"
grep -q "did not finish within 5 s" "$WORK/stuck.log" || fail "no watchdog message: $(tail -5 "$WORK/stuck.log")"
echo "frozen rank: job ended after $(( $(date +%s) - stopped ))s with the watchdog's message (exit $rc)"
