# What the Slurm integration tests share, sourced after `set -euo pipefail` with VDM and SRC set:
# the skip (exit 77) without the Slurm packages or root, a work directory removed at exit with
# its cluster stopped (KEEP_WORK=1 keeps it), fail() with the controller's log, a port of the
# test's own, and waiting for jobs. SLURM_CLIENT is the prefix that reaches slurmctld (a
# multi-node cluster's clients run on its login host).
CLUSTER_SH=$SRC/slurm/local-cluster.sh
if ! bash "$CLUSTER_SH" check; then
  echo "SKIP: the Slurm packages are not installed (apt-get install --no-install-recommends slurmctld slurmd slurm-client munge)"
  exit 77
fi
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the local cluster runs its daemons as root"; exit 77; }
WORK=$(mktemp -d)
CLUSTER=$WORK/cluster
cleanup() {
  bash "$CLUSTER_SH" stop "$CLUSTER" || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- slurmctld log tail" >&2; tail -n 15 "$CLUSTER/log/slurmctld.log" >&2 || true
  exit 1
}
# A port of its own, so the test cluster can run beside another one.
export VDM_SLURM_PORT=$((20000 + RANDOM % 20000))
SLURM_CLIENT=()

job_state() { "${SLURM_CLIENT[@]}" scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
wait_job() {  # job id, seconds -> waits for a final state, prints it
  local state
  for _ in $(seq $(($2 * 5))); do
    state=$(job_state "$1")
    case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) echo "$state"; return;; esac
    sleep 0.2
  done
  echo "TIMEOUT_WAITING($state)"
}
