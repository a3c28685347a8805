#!/usr/bin/env bash
# A failing rank ends the whole job quickly and loudly: under mpiexec -np 2, rank 1 throwing
# mid-run, or rank 1 no longer joining collectives (the watchdog on rank 0 must fire), makes
# the job exit non-zero within 30 s with a message naming the rank, or the operation and step.
set -euo pipefail
VDM=$1
PROBE=$(dirname "$VDM")/tests/distributed_probe
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for mode in throw stall; do
  start=$(date +%s)
  set +e
  timeout 60 mpiexec -np 2 --oversubscribe "$PROBE" "$mode" > "$WORK/$mode.txt" 2>&1
  code=$?
  set -e
  took=$(( $(date +%s) - start ))
  [ $code -ne 0 ] || fail "$mode: the job exited 0"
  [ $code -ne 124 ] || fail "$mode: the job hung (killed by timeout)"
  [ $took -le 30 ] || fail "$mode: took ${took}s"
  echo "$mode: exit $code after ${took}s"
done
grep -q "rank 1: rank 1 failed on purpose at step 3" "$WORK/throw.txt" || fail "throw message: $(cat "$WORK/throw.txt")"
grep -q "collective all_reduce(gradients) at step 3 did not finish within 2 s" "$WORK/stall.txt" \
  || fail "watchdog message: $(cat "$WORK/stall.txt")"
echo "rank_failure: all checks passed"
