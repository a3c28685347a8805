#!/usr/bin/env bash
# vdm on a real one-node Slurm cluster (slurm/local-cluster.sh): `vdm submit` of a 2-rank CPU run
# under srun --mpi=pmix (and one under mpirun); a longer run sent USR2 with `scancel -b` that
# checkpoints, requeues itself and finishes from its checkpoint with SLURM_RESTART_COUNT=1; a
# 3-point sweep as a job array, summarised by `vdm report`. Exit 77 (skipped) only when the
# Slurm packages are not installed.
set -euo pipefail
VDM=$1
SRC=$2
source "$SRC/tests/integration/lib/slurm_test.sh"
eval "$(bash "$CLUSTER_SH" start "$CLUSTER")"
export PATH=$PATH:/usr/sbin

CONFIG=$SRC/configs/quickstart.yaml
COMMON=(model.preset=tiny data.resolution=16 data.workers=1 train.batch_size=8 train.threads=1
        train.log_every=1 eval.num_samples=4 eval.steps=4 eval.bpd_samples=32 eval.batch_size=32
        distributed.timeout_s=60 slurm.tasks_per_node=2 slurm.cpus_per_task=1 slurm.time=10)

check_run() {  # run dir, steps
  local f
  for f in config.yaml metrics.jsonl eval.jsonl "checkpoints/step_$(printf %08d "$2")/manifest.json"; do
    [ -s "$1/$f" ] || fail "$1 has no $f: $(tail -5 "$1"/slurm-*.out "$1"/../slurm-*.out 2>/dev/null)"
  done
  [ "$(tail -1 "$1/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2)" = "$2" ] || fail "$1: metrics do not reach step $2"
  grep -q '"bpd":' "$1/eval.jsonl" || fail "$1: eval.jsonl has no bpd"
}

# 1. A short 2-rank run under srun --mpi=pmix.
id=$("$VDM" submit "$CONFIG" "${COMMON[@]}" train.steps=8 checkpoint.every=4 --run-dir "$WORK/short" 2> "$WORK/submit.log") \
  || fail "vdm submit: $(cat "$WORK/submit.log")"
[[ $id =~ ^[0-9]+$ ]] || fail "vdm submit printed '$id', not a job id"
state=$(wait_job "$id" 120)
[ "$state" = COMPLETED ] || fail "short job $id: $state: $(cat "$WORK/short/slurm-$id.out")"
check_run "$WORK/short" 8
[ -s "$WORK/short/job.sbatch" ] || fail "no job.sbatch in the run directory"
[ -s "$WORK/short/checkpoints/step_00000004/manifest.json" ] || fail "no step-4 checkpoint"
grep -q "2 rank(s)" "$WORK/short/slurm-$id.out" || fail "not a 2-rank run: $(cat "$WORK/short/slurm-$id.out")"
echo "submit: 2-rank srun job $id completed; checkpoints, metrics and bpd written"

# 2. The same under mpirun inside the allocation.
id=$("$VDM" submit "$CONFIG" "${COMMON[@]}" train.steps=4 checkpoint.every=0 slurm.launcher=mpirun \
       --run-dir "$WORK/mpirun" 2> "$WORK/submit2.log") || fail "vdm submit (mpirun): $(cat "$WORK/submit2.log")"
state=$(wait_job "$id" 120)
[ "$state" = COMPLETED ] || fail "mpirun job $id: $state: $(cat "$WORK/mpirun/slurm-$id.out")"
check_run "$WORK/mpirun" 4
grep -q "2 rank(s)" "$WORK/mpirun/slurm-$id.out" || fail "mpirun: not a 2-rank run"
echo "submit: 2-rank mpirun job $id completed"

# 3. Preemption: USR2 to the batch shell -> checkpoint, exit 75, scontrol requeue, resume.
STEPS=300
id=$("$VDM" submit "$CONFIG" "${COMMON[@]}" train.steps=$STEPS train.log_every=5 checkpoint.every=0 \
       --run-dir "$WORK/long" 2> "$WORK/submit3.log") || fail "vdm submit (long): $(cat "$WORK/submit3.log")"
for _ in $(seq 600); do
  [ "$(cat "$WORK/long/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
  sleep 0.1
done
[ "$(cat "$WORK/long/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] || fail "the long job did not start: $(cat "$WORK/long/slurm-$id.out")"
scancel -b -s USR2 "$id"
for _ in $(seq 600); do
  [ "$(grep -c '"exit_code"' "$WORK/long/attempts.jsonl" 2>/dev/null)" = 2 ] && break
  sleep 0.2
done
state=$(wait_job "$id" 120)
LOG=$WORK/long/slurm-$id.out
[ "$state" = COMPLETED ] || fail "long job $id: $state: $(cat "$LOG")"
grep -q "got SIGUSR2" "$LOG" || fail "the batch shell did not see USR2: $(cat "$LOG")"
step=$(grep -o "checkpointing at step [0-9]*" "$LOG" | head -1 | grep -o "[0-9]*$")
[ -n "$step" ] && [ "$step" -lt $STEPS ] || fail "no checkpoint before the end: $(cat "$LOG")"
grep -q "requeueing job $id" "$LOG" || fail "not requeued: $(cat "$LOG")"
grep -q "restart 1 on" "$LOG" || fail "the second attempt did not see SLURM_RESTART_COUNT=1: $(cat "$LOG")"
grep -q "resumed from .*step_$(printf %08d "$step")" "$LOG" || fail "did not resume from step $step: $(cat "$LOG")"
scontrol show job "$id" | grep -q "Restarts=1" || fail "Slurm does not count one restart"
[ "$(sed -n 1p "$WORK/long/attempts.jsonl" | grep -o '"exit_code": [0-9]*')" = '"exit_code": 75' ] || fail "first attempt: $(cat "$WORK/long/attempts.jsonl")"
[ "$(sed -n 2p "$WORK/long/attempts.jsonl" | grep -o '"restart": [0-9]*')" = '"restart": 1' ] || fail "second attempt: $(cat "$WORK/long/attempts.jsonl")"
check_run "$WORK/long" $STEPS
echo "preemption: USR2 -> checkpoint at step $step, exit 75, requeue, restart 1 resumed and completed"

# 4. A 3-point sweep as a job array, then its report.
cat > "$WORK/sweep.yaml" <<EOF
name: cluster_test
base: $CONFIG
max_parallel: 3
overrides: [$(IFS=,; echo "${COMMON[*]}"), train.steps=6, checkpoint.every=0, slurm.tasks_per_node=1]
points:
  - {label: elbo, overrides: [objective.weighting.name=elbo]}
  - {label: sigmoid, overrides: [objective.weighting.name=sigmoid], grid: {objective.weighting.bias: [2]}}
  - {label: eps_mse, overrides: [objective.name=eps_mse]}
EOF
id=$("$VDM" sweep "$WORK/sweep.yaml" --sweep-dir "$WORK/sweep" 2> "$WORK/sweep.log") || fail "vdm sweep: $(cat "$WORK/sweep.log")"
grep -qxF "#SBATCH --array=0-2%3" "$WORK/sweep/job.sbatch" || fail "no job array line"
for i in 0 1 2; do
  state=$(wait_job "${id}_$i" 180)
  [ "$state" = COMPLETED ] || fail "array task ${id}_$i: $state: $(cat "$WORK/sweep"/slurm-${id}_$i.out)"
done
for d in 0_elbo 1_sigmoid_bias=2 2_eps_mse; do check_run "$WORK/sweep/$d" 6; done
"$VDM" report "$WORK/sweep" > "$WORK/report.md" 2> "$WORK/report.log" || fail "vdm report: $(cat "$WORK/report.log")"
[ "$(grep -c ',done,6,' "$WORK/sweep/report.csv")" -eq 3 ] || fail "report.csv: $(cat "$WORK/sweep/report.csv")"
grep -q '^| 2 | eps_mse | eps_mse | done | 6/6 |' "$WORK/report.md" || fail "report.md: $(cat "$WORK/report.md")"
# bits/dim with its standard error; the augmented ELBO for the monotone weightings only
grep -q '^| 0 | elbo | elbo | done | 6/6 | [^|]* | [0-9.]* ± [0-9.]* | [0-9.]* ± [0-9.]* |' "$WORK/report.md" \
  || fail "report.md elbo row: $(cat "$WORK/report.md")"
grep -q '^| 2 | eps_mse .*| not monotone |' "$WORK/report.md" || fail "report.md eps_mse row: $(cat "$WORK/report.md")"
[ "$(grep -c '<svg' "$WORK/sweep/report.html")" -eq 5 ] || fail "report.html should hold 5 plots"
for plot in loss weighting bpd augmented_elbo fid; do
  grep -q '<svg' "$WORK/sweep/report_$plot.svg" || fail "no report_$plot.svg"
done
echo "sweep: job array $id, 3 points completed; report written"

# Missing and failed points are reported as such.
rm -rf "$WORK/sweep/0_elbo"
echo '{"job": "x", "restart": 1, "start": 0, "end": 1, "exit_code": 1}' >> "$WORK/sweep/1_sigmoid_bias=2/attempts.jsonl"
"$VDM" report "$WORK/sweep" > /dev/null 2>&1 || fail "report of a damaged sweep"
grep -q '^0,elbo,,missing,' "$WORK/sweep/report.csv" || fail "missing point: $(cat "$WORK/sweep/report.csv")"
grep -q '^1,sigmoid_bias=2,.*,failed (exit 1),' "$WORK/sweep/report.csv" || fail "failed point: $(cat "$WORK/sweep/report.csv")"
echo "report: missing and failed points shown"
echo "slurm_cluster: all checks passed"
