#!/usr/bin/env bash
# The sbatch script `vdm submit --dry-run` renders, without a cluster: config strings full of
# quotes, $(), backticks and newlines stay literal (bash -n passes, running the script creates
# no file they name, the trainer gets them byte for byte); the script passes USR2 on to the
# step and requeues on exit code 75; values an #SBATCH line cannot hold are refused.
set -euo pipefail
VDM=$1
SRC=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Stand-ins for srun, scontrol and vdm: srun drops its options and runs the command.
BIN=$WORK/bin
VDMDIR="$WORK/my dir/it's \$(touch pwned_vdm)"
mkdir -p "$BIN" "$VDMDIR" "$WORK/cwd"
cat > "$BIN/srun" <<'EOF'
#!/bin/bash
while [[ $1 == --* ]]; do shift; done
exec "$@"
EOF
cat > "$BIN/scontrol" <<EOF
#!/bin/bash
printf '%s\n' "\$@" > '$WORK/scontrol.args'
EOF
cat > "$VDMDIR/vdm" <<EOF
#!/bin/bash
printf '%s\n' "\$@" > '$WORK/vdm.args'
printf '%s' "\$MSG" > '$WORK/msg'
printf '%s' "\$EMPTY" > '$WORK/empty'
if [ -n "\${FAKE_WAIT_USR2:-}" ]; then
  trap 'exit 75' USR2
  touch '$WORK/started'
  for _ in \$(seq 200); do sleep 0.05; done
  exit 1
fi
exit "\${FAKE_EXIT:-0}"
EOF
chmod +x "$BIN"/* "$VDMDIR/vdm"

MSG=$'it\'s "quoted" $(touch pwned_env) `touch pwned_env2` ${HOME} \\n\nsecond line; touch pwned_env3'
python3 - "$WORK/nasty.yaml" "$MSG" "$VDMDIR/vdm" <<'PY'
import json, sys
path, msg, vdm = sys.argv[1:]
q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
values = {
    "name": q("job 'n' \"q\" $(touch pwned_name) `touch pwned_tick`\nx"),
    "partition": q("p$(touch pwned_partition)"),
    "account": q("a'b\"c`touch pwned_account`"),
    "qos": q("q\\x"),
    "extra": q("--comment=$(touch pwned_extra) `touch pwned_extra2`"),
    "msg": q(msg),
    "vdm": q(vdm),
}
open(path, "w").write("""
name: {name}
data: {{path: /nonexistent}}
slurm:
  tasks_per_node: 2
  cpus_per_task: 1
  partition: {partition}
  account: {account}
  qos: {qos}
  extra: [{extra}]
  env: {{MSG: {msg}, EMPTY: ""}}
  vdm: {vdm}
""".format(**values))
PY
RUN="$WORK/run 'x' \$(touch pwned_run) \`touch pwned_run2\` \"d\""
mkdir -p "$RUN"
cd "$WORK/cwd"
"$VDM" submit ../nasty.yaml --run-dir "$RUN" --dry-run > "$WORK/job.sbatch" 2> "$WORK/submit.log" \
  || fail "dry run: $(cat "$WORK/submit.log")"
[ ! -e "$RUN/job.sbatch" ] || fail "--dry-run wrote the script"
bash -n "$WORK/job.sbatch" || fail "the rendered script is not valid bash"
# Directives: each config value one quoted line; no line outside a directive mentions a config string.
grep -qxF '#SBATCH --partition="p$(touch pwned_partition)"' "$WORK/job.sbatch" || fail "partition line: $(grep partition "$WORK/job.sbatch")"
grep -qxF '#SBATCH --account="a'"'"'b\"c`touch pwned_account`"' "$WORK/job.sbatch" || fail "account line: $(grep account "$WORK/job.sbatch")"
grep -qxF '#SBATCH --qos="q\\x"' "$WORK/job.sbatch" || fail "qos line: $(grep qos "$WORK/job.sbatch")"
grep -q '^#SBATCH --job-name="job .*_x"$' "$WORK/job.sbatch" || fail "job name line: $(grep job-name "$WORK/job.sbatch")"
grep -qxF '#SBATCH --ntasks-per-node=2' "$WORK/job.sbatch" || fail "no --ntasks-per-node=2"
grep -qxF '#SBATCH --open-mode=append' "$WORK/job.sbatch" || fail "no --open-mode=append"
grep -qxF '#SBATCH --signal=B:USR2@90' "$WORK/job.sbatch" || fail "no --signal=B:USR2@90"
grep -q 'srun --mpi=pmix' "$WORK/job.sbatch" || fail "no srun --mpi=pmix"
if grep -v '^#' "$WORK/job.sbatch" | grep -q 'touch pwned_\(name\|tick\|partition\|account\|extra\)'; then
  fail "a directive value leaked out of its #SBATCH line"
fi
echo "rendered script: bash -n passes, directive values quoted"

# Run it: nothing named in a config string is executed, the trainer sees every string intact.
PATH="$BIN:$PATH" SLURM_JOB_ID=42 SLURM_RESTART_COUNT=0 bash "$WORK/job.sbatch" > "$WORK/job.out" 2>&1 \
  || fail "running the script: $(cat "$WORK/job.out")"
pwned=$(find "$WORK" -name 'pwned*')
[ -z "$pwned" ] || fail "a config string ran a command: $pwned"
printf '%s\n' train "$RUN/config.yaml" --run-dir "$RUN" --resume auto > "$WORK/expected.args"
cmp -s "$WORK/expected.args" "$WORK/vdm.args" || fail "vdm got other arguments: $(cat "$WORK/vdm.args")"
[ "$(cat "$WORK/msg")" = "$MSG" ] || fail "slurm.env MSG changed on the way: $(cat "$WORK/msg")"
[ ! -s "$WORK/empty" ] || fail "EMPTY is not empty"
grep -q '"exit_code": 0' "$RUN/attempts.jsonl" || fail "no attempt line: $(cat "$RUN/attempts.jsonl" 2>&1)"
[ ! -e "$WORK/scontrol.args" ] || fail "requeued a job that finished"
echo "running it: no injected command ran; argv and environment arrive literally"

# USR2 to the batch shell reaches the trainer, which exits 75; the script requeues the job.
FAKE_WAIT_USR2=1 PATH="$BIN:$PATH" SLURM_JOB_ID=42 SLURM_RESTART_COUNT=0 bash "$WORK/job.sbatch" > "$WORK/job2.out" 2>&1 &
job=$!
for _ in $(seq 200); do [ -e "$WORK/started" ] && break; sleep 0.05; done
[ -e "$WORK/started" ] || fail "the fake trainer did not start: $(cat "$WORK/job2.out")"
kill -USR2 $job
wait $job || fail "the script should exit 0 after requeueing: $(cat "$WORK/job2.out")"
[ "$(cat "$WORK/scontrol.args" 2>/dev/null)" = $'requeue\n42' ] || fail "no scontrol requeue 42: $(cat "$WORK/job2.out")"
grep -q '"exit_code": 75' "$RUN/attempts.jsonl" || fail "exit code 75 not recorded"
echo "USR2: forwarded, exit 75, scontrol requeue"

# After slurm.max_requeues requeues the script stops asking and exits 75 itself.
"$VDM" submit ../nasty.yaml slurm.max_requeues=3 --run-dir "$RUN" --dry-run > "$WORK/limit.sbatch" \
  2> "$WORK/submit3.log" || fail "dry run with max_requeues: $(cat "$WORK/submit3.log")"
rm -f "$WORK/scontrol.args" "$WORK/started"
FAKE_WAIT_USR2=1 PATH="$BIN:$PATH" SLURM_JOB_ID=42 SLURM_RESTART_COUNT=3 bash "$WORK/limit.sbatch" > "$WORK/job3.out" 2>&1 &
job=$!
for _ in $(seq 200); do [ -e "$WORK/started" ] && break; sleep 0.05; done
[ -e "$WORK/started" ] || fail "the fake trainer did not start: $(cat "$WORK/job3.out")"
kill -USR2 $job
set +e
wait $job
code=$?
set -e
[ $code -eq 75 ] || fail "at the requeue limit the script should exit 75, got $code: $(cat "$WORK/job3.out")"
[ ! -e "$WORK/scontrol.args" ] || fail "requeued past slurm.max_requeues"
grep -q "slurm.max_requeues=3" "$WORK/job3.out" || fail "no message about the limit: $(cat "$WORK/job3.out")"
echo "slurm.max_requeues: no requeue at the limit, exit 75"

# What an #SBATCH line cannot hold is refused with the key named; nothing is written.
set +e
"$VDM" submit ../nasty.yaml 'slurm.partition="a\nb"' --run-dir "$RUN" --dry-run > /dev/null 2> "$WORK/err1"; c1=$?
"$VDM" submit ../nasty.yaml 'slurm.extra=["echo hi"]' --run-dir "$RUN" --dry-run > /dev/null 2> "$WORK/err2"; c2=$?
set -e
[ $c1 -eq 2 ] && grep -q "slurm.partition: contains a control character" "$WORK/err1" || fail "newline in partition: $c1 $(cat "$WORK/err1")"
[ $c2 -eq 2 ] && grep -q "slurm.extra\[0\]: 'echo hi' is not an sbatch option" "$WORK/err2" || fail "bad extra: $c2 $(cat "$WORK/err2")"
echo "refused: newline in a directive, an extra line that is no option"

# The Fashion-MNIST sweep as a job array: 6 points, two at a time, one run directory each.
"$VDM" sweep "$SRC/configs/sweeps/fashion_mnist_weighting.yaml" --sweep-dir "$WORK/sweep" --dry-run \
  > "$WORK/array.sbatch" 2> "$WORK/sweep.log" || fail "sweep dry run: $(cat "$WORK/sweep.log")"
bash -n "$WORK/array.sbatch" || fail "the array script is not valid bash"
grep -qxF '#SBATCH --array=0-5%2' "$WORK/array.sbatch" || fail "array line: $(grep array "$WORK/array.sbatch")"
grep -qF "'$WORK/sweep/1_sigmoid_bias=-2'" "$WORK/array.sbatch" || fail "no run dir for point 1: $(cat "$WORK/sweep.log")"
[ "$(grep -c "^  [0-9]_" "$WORK/sweep.log")" -eq 6 ] || fail "expected 6 points: $(cat "$WORK/sweep.log")"
[ ! -e "$WORK/sweep" ] || fail "sweep --dry-run wrote files"
echo "sweep --dry-run: a 6-task array, two at a time"
echo "slurm_script: all checks passed"
