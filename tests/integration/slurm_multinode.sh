#!/usr/bin/env bash
# vdm on a real two-node Slurm cluster on this box (slurm/local-cluster.sh --nodes 2: each node a
# network and UTS namespace with its own hostname, address and slurmd), and the failures clusters
# have:
# 1. `vdm submit` with slurm.nodes=2 slurm.tasks_per_node=2 trains 4 ranks, 2 per node, MPI
#    between the nodes over TCP; the log names both nodes with local ranks 0 and 1 on each; the
#    losses equal those of 4 ranks on one host (mpirun) with the same seed.
# 2. Every process of node1 killed mid-run: the step ends within 60 s, srun names the node, no
#    rank keeps running, and the last checkpoint is intact:
# 3. the run, resubmitted on one node (2 ranks), resumes from it and the sample stream goes on.
# 4. USR2 to a 2-node job: all 4 ranks checkpoint at one step, exit 75, requeue, resume, finish.
# 5. A sweep of 2-node points is one job array, run to completion and reported.
# They run in the order 1, 4, 5, 2, 3: 2 takes node1 away.
# Exit 77 (skipped) only without the Slurm packages, root or network namespaces, with the reason.
set -euo pipefail
VDM=$1
SRC=$2
source "$SRC/tests/integration/lib/slurm_test.sh"
code=0
bash "$CLUSTER_SH" start "$CLUSTER" --nodes 2 > "$WORK/start.out" 2> "$WORK/start.err" || code=$?
[ $code -eq 77 ] && { echo "SKIP: $(tail -1 "$WORK/start.err")"; exit 77; }
[ $code -eq 0 ] || fail "cluster start: $(cat "$WORK/start.err")"
on_login() { bash "$CLUSTER_SH" exec "$CLUSTER" "$@"; }
SLURM_CLIENT=(on_login)

CONFIG=$SRC/configs/quickstart.yaml
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=8 train.threads=1
        train.log_every=1 train.steps=6 checkpoint.every=3 eval.num_samples=0 eval.bpd_samples=32
        eval.batch_size=32 eval.fid.enabled=false distributed.timeout_s=60)

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

# 4. Preemption across nodes: USR2 to the batch shell on node0 reaches all 4 ranks, which
# checkpoint at one step, exit 75, requeue, and the restart resumes and finishes.
STEPS=400
id=$(on_login "$VDM" submit "$CONFIG" "${COMMON[@]}" train.steps=$STEPS train.log_every=10 checkpoint.every=0 \
       slurm.nodes=2 slurm.tasks_per_node=2 slurm.cpus_per_task=1 slurm.time=10 'slurm.env={VDM_LOG_ALL_RANKS: "1"}' \
       --run-dir "$WORK/pre" 2> "$WORK/submit4.log") || fail "vdm submit: $(cat "$WORK/submit4.log")"
for _ in $(seq 600); do
  [ "$(cat "$WORK/pre/metrics.jsonl" 2>/dev/null | wc -l)" -ge 2 ] && break
  sleep 0.1
done
on_login scancel -b -s USR2 "$id"
for _ in $(seq 600); do
  [ "$(grep -c '"exit_code"' "$WORK/pre/attempts.jsonl" 2>/dev/null)" = 2 ] && break
  sleep 0.2
done
state=$(wait_job "$id" 120)
LOG=$WORK/pre/slurm-$id.out
[ "$state" = COMPLETED ] || fail "preempted job $id: $state: $(tail -30 "$LOG")"
step=$(grep -o "checkpointing at step [0-9]*" "$LOG" | head -1 | grep -o "[0-9]*$")
[ -n "$step" ] && [ "$step" -lt $STEPS ] || fail "no checkpoint before the end: $(tail -30 "$LOG")"
agreed=$(grep -cE "\[rank [0-3]/4 node[01]\] warning stop requested .*checkpointing at step $step," "$LOG" || true)
[ "$agreed" -eq 4 ] || fail "$agreed of 4 ranks stopped at step $step: $(grep 'stop requested' "$LOG")"
for node in node0 node1; do grep -q "/4 $node\] warning stop requested" "$LOG" || fail "no rank on $node stopped"; done
grep -q "requeueing job $id" "$LOG" || fail "not requeued: $(tail -30 "$LOG")"
grep -q "resumed from .*step_$(printf %08d "$step")" "$LOG" || fail "did not resume from step $step: $(tail -30 "$LOG")"
[ "$(tail -1 "$WORK/pre/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2)" = $STEPS ] || fail "did not finish"
echo "preemption across nodes: 4 ranks on node0 and node1 checkpointed at step $step, exit 75, requeued, resumed, finished"

# 5. A sweep of 2-node points: one job array, each task 4 ranks on both nodes, then the report.
cat > "$WORK/sweep.yaml" <<SWEEP
name: mn_sweep
base: $CONFIG
max_parallel: 2
overrides: [$(IFS=,; echo "${COMMON[*]}"), slurm.nodes=2, slurm.tasks_per_node=2, slurm.cpus_per_task=1, slurm.time=10]
points:
  - {label: elbo, overrides: [objective.weighting.name=elbo]}
  - {label: eps_mse, overrides: [objective.name=eps_mse]}
SWEEP
id=$(on_login "$VDM" sweep "$WORK/sweep.yaml" --sweep-dir "$WORK/sweep" 2> "$WORK/sweep.log") || fail "vdm sweep: $(cat "$WORK/sweep.log")"
for i in 0 1; do
  state=$(wait_job "${id}_$i" 180)
  [ "$state" = COMPLETED ] || fail "array task ${id}_$i: $state: $(cat "$WORK/sweep"/slurm-${id}_$i.out)"
  grep -q "4 ranks on 2 node(s)" "$WORK/sweep"/slurm-${id}_$i.out || fail "task $i did not run on 2 nodes"
done
"$VDM" report "$WORK/sweep" > "$WORK/report.md" 2> "$WORK/report.log" || fail "vdm report: $(cat "$WORK/report.log")"
[ "$(grep -c ',done,6,' "$WORK/sweep/report.csv")" -eq 2 ] || fail "report.csv: $(cat "$WORK/sweep/report.csv")"
echo "sweep: job array $id, 2 points of 2 nodes each completed; report written"

# 2. A node dies: every process of node1 (its slurmd and its two ranks) SIGKILLed mid-run.
id=$(on_login "$VDM" submit "$CONFIG" "${COMMON[@]}" train.steps=100000 train.log_every=10 checkpoint.every=20 \
       slurm.nodes=2 slurm.tasks_per_node=2 slurm.cpus_per_task=1 slurm.time=10 slurm.max_requeues=0 \
       --run-dir "$WORK/fail" 2> "$WORK/submit2.log") || fail "vdm submit: $(cat "$WORK/submit2.log")"
for _ in $(seq 600); do
  [ -s "$WORK/fail/checkpoints/step_00000040/manifest.json" ] && break
  sleep 0.2
done
[ -s "$WORK/fail/checkpoints/step_00000040/manifest.json" ] || fail "no checkpoint before the kill: $(cat "$WORK/fail/slurm-$id.out")"
killed_at=$(date +%s)
bash "$CLUSTER_SH" kill-node "$CLUSTER" node1 2> "$WORK/kill.log" || fail "kill-node: $(cat "$WORK/kill.log")"
# The attempt is over when the job has ended or Slurm has requeued it (its default on a node
# failure), which then waits for two nodes that are not there.
for _ in $(seq 180); do
  info=$(on_login scontrol show job "$id" 2>/dev/null || true)
  state=$(echo "$info" | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2)
  restarts=$(echo "$info" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
  case $state in FAILED|NODE_FAIL|CANCELLED|COMPLETED|TIMEOUT) break;; PENDING) [ "${restarts:-0}" -ge 1 ] && break;; esac
  sleep 0.5
done
ended=$(( $(date +%s) - killed_at ))
case $state in FAILED|NODE_FAIL|CANCELLED|PENDING) ;; *) fail "after the kill the job is $state: $(tail -20 "$WORK/fail/slurm-$id.out")";; esac
[ $ended -le 60 ] || fail "the job took $ended s to end after the kill: $(tail -20 "$WORK/fail/slurm-$id.out")"
[ "$state" = PENDING ] && on_login scancel "$id"
grep -q 'Node failure on node1' "$WORK/fail/slurm-$id.out" || fail "the log does not name the lost node: $(tail -20 "$WORK/fail/slurm-$id.out")"
sleep 2
! pgrep -f -- "--run-dir $WORK/fail" > /dev/null || fail "ranks still running after the job ended: $(pgrep -af -- "--run-dir $WORK/fail")"
last=$(ls "$WORK/fail/checkpoints" | grep '^step_' | sort | tail -1)
echo "node failure: job $id ended ($state: Slurm requeued it, cancelled here) $ended s after node1 was killed: $(grep -m1 'Node failure on node1' "$WORK/fail/slurm-$id.out")"

# 3. Requeued onto fewer nodes: the same run on node0 alone (2 ranks) resumes from the newest intact
# checkpoint, and the global sample stream goes on where it stopped.
K=$(grep -o '"step": [0-9]*' "$WORK/fail/checkpoints/$last/state.json" | grep -o '[0-9]*$')
id=$(on_login "$VDM" submit "$CONFIG" "${COMMON[@]}" train.steps=$((K + 10)) train.log_every=10 checkpoint.every=20 \
       slurm.nodes=1 slurm.tasks_per_node=2 slurm.cpus_per_task=1 slurm.time=10 \
       --run-dir "$WORK/fail" 2> "$WORK/submit3.log") || fail "vdm submit (1 node): $(cat "$WORK/submit3.log")"
state=$(wait_job "$id" 120)
[ "$state" = COMPLETED ] || fail "resumed job $id: $state: $(tail -20 "$WORK/fail/slurm-$id.out")"
grep -q "resumed from .*step_$(printf %08d "$K")" "$WORK/fail/slurm-$id.out" || fail "did not resume from step $K: $(cat "$WORK/fail/slurm-$id.out")"
final=$WORK/fail/checkpoints/step_$(printf %08d $((K + 10)))/state.json
consumed=$(grep -o '"consumed": [0-9]*' "$final" | grep -o '[0-9]*$')
[ "$consumed" -eq $((K * 32 + 10 * 16)) ] && grep -q '"epoch": 0' "$final" \
  || fail "sample stream: consumed $consumed, want $K x 32 + 10 x 16 in epoch 0: $(cat "$final")"
echo "requeue onto 1 node: resumed at step $K on 2 ranks; $consumed samples = $K x 4 x 8 + 10 x 2 x 8, epoch 0"

echo "slurm_multinode: all checks passed"
