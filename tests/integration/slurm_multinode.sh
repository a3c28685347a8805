#!/usr/bin/env bash
# vdm on a real two-node Slurm cluster on this box (slurm/local-cluster.sh --nodes 2: each node a
# network and UTS namespace with its own hostname, address and slurmd): `vdm submit` with
# slurm.nodes=2 slurm.tasks_per_node=2 trains 4 ranks, 2 per node, MPI between the nodes over TCP;
# the log names both nodes with local ranks 0 and 1 on each; the losses equal those of 4 ranks on
# one host (mpirun) with the same seed. Exit 77 (skipped) only without the Slurm packages, root or
# network namespaces, with the reason.
set -euo pipefail
VDM=$1
SRC=$2
CLUSTER_SH=$SRC/slurm/local-cluster.sh
if ! bash "$CLUSTER_SH" check; then
  echo "SKIP: the Slurm packages are not installed (apt-get install --no-install-recommends slurmctld slurmd slurm-client munge)"
  exit 77
fi
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the multi-node test bed needs root (network namespaces, Slurm daemons)"; exit 77; }
WORK=$(mktemp -d)
CLUSTER=$WORK/cluster
cleanup() {
  bash "$CLUSTER_SH" stop "$CLUSTER" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- slurmctld log tail" >&2; tail -n 15 "$CLUSTER/log/slurmctld.log" >&2 || true
  exit 1
}
export VDM_SLURM_PORT=$((20000 + RANDOM % 20000))
code=0
bash "$CLUSTER_SH" start "$CLUSTER" --nodes 2 > "$WORK/start.out" 2> "$WORK/start.err" || code=$?
[ $code -eq 77 ] && { echo "SKIP: $(tail -1 "$WORK/start.err")"; exit 77; }
[ $code -eq 0 ] || fail "cluster start: $(cat "$WORK/start.err")"
on_login() { bash "$CLUSTER_SH" exec "$CLUSTER" "$@"; }

CONFIG=$SRC/configs/quickstart.yaml
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=8 train.threads=1
        train.log_every=1 train.steps=6 checkpoint.every=3 eval.num_samples=0 eval.bpd_samples=32
        eval.batch_size=32 eval.fid.enabled=false distributed.timeout_s=60)

job_state() { on_login scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
wait_job() {  # job id, seconds -> waits for a final state, prints it
  local state
  for _ in $(seq $(($2 * 2))); do
    state=$(job_state "$1")
    case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) echo "$state"; return;; esac
    sleep 0.5
  done
  echo "TIMEOUT_WAITING($state)"
}
losses() { grep -o '"loss":[-0-9.e]*' "$1/metrics.jsonl" | cut -d: -f2; }

# 1. 4 ranks on 2 nodes, submitted from the login host.
start=$(date +%s)
id=$(on_login "$VDM" submit "$CONFIG" "${COMMON[@]}" slurm.nodes=2 slurm.tasks_per_node=2 slurm.cpus_per_task=1 \
       slurm.time=10 --run-dir "$WORK/two" 2> "$WORK/submit.log") || fail "vdm submit: $(cat "$WORK/submit.log")"
[[ $id =~ ^[0-9]+$ ]] || fail "vdm submit printed '$id', not a job id"
state=$(wait_job "$id" 180)
[ "$state" = COMPLETED ] || fail "2-node job $id: $state: $(cat "$WORK/two/slurm-$id.out")"
layout=$(grep -o '4 ranks on 2 node(s): .*' "$WORK/two/slurm-$id.out" || true)
[ "$layout" = "4 ranks on 2 node(s): node0: rank 0 (local 0), rank 1 (local 1); node1: rank 2 (local 0), rank 3 (local 1)" ] \
  || fail "layout line: '$layout' in $(cat "$WORK/two/slurm-$id.out")"
[ -s "$WORK/two/checkpoints/step_00000006/manifest.json" ] || fail "no final checkpoint"
grep -q '"bpd":' "$WORK/two/eval.jsonl" || fail "no bits/dim"
echo "$layout"
echo "2 nodes: job $id completed in $(( $(date +%s) - start )) s"

# 2. The same run as 4 ranks on this host: the same losses, to float tolerance.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 4 \
  "$VDM" train "$CONFIG" "${COMMON[@]}" --run-dir "$WORK/one" > "$WORK/one.log" 2>&1 \
  || fail "4 ranks on one host: $(tail -5 "$WORK/one.log")"
paste <(losses "$WORK/two") <(losses "$WORK/one") > "$WORK/losses.txt"
[ "$(wc -l < "$WORK/losses.txt")" -eq 6 ] || fail "expected 6 logged steps: $(cat "$WORK/losses.txt")"
awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($2 < 0 ? -$2 : $2) + 1e-7) { print "step " NR ": " $1 " vs " $2; bad = 1 } }
     END { exit bad }' "$WORK/losses.txt" || fail "2 nodes and 1 host differ: $(cat "$WORK/losses.txt")"
echo "the 2-node losses equal the 1-host ones: $(tr '\t' '=' < "$WORK/losses.txt" | tr '\n' ' ')"
echo "slurm_multinode: all checks passed"
