#!/usr/bin/env bash
# Starts and stops a real one-node Slurm cluster (munged + slurmctld + slurmd) on a test box, as
# root, with its config, state and logs under DIR; the integration tests run `vdm submit` and
# `vdm sweep` against it. Facts behind the settings: ../shared/notes/slurm-local.md.
#
#   slurm/local-cluster.sh start DIR   # prints the line to eval: export SLURM_CONF=DIR/slurm.conf
#   slurm/local-cluster.sh stop DIR    # scontrol shutdown, then the daemons' pids from DIR
#   slurm/local-cluster.sh check       # exit 0 if the Slurm and munge packages are installed
#
# VDM_SLURM_PORT (default 6817) picks slurmctld's port; slurmd takes the next one, so a test
# cluster can run beside another one.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR  |  $0 check" >&2; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1

have_packages() {
  local p
  for p in slurmctld slurmd sbatch scontrol sinfo munged munge unmunge; do
    command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || return 1
  done
}

if [ "$cmd" = check ]; then
  have_packages
  exit
fi
[ $# -eq 2 ] || usage
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin

log() { echo "local-cluster: $*" >&2; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  # One munged per machine (it owns /run/munge); reuse a working one, and only stop at the end
  # the one this script started.
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running; using it"
    return
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  [ -s /etc/munge/munge.key ] || { runuser -u munge -- mungekey --create 2>/dev/null || \
    { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }; }
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && { cp /run/munge/munged.pid "$DIR/munged.pid"; return; }
    sleep 0.1
  done
  log "munged did not come up"; exit 1
}

write_config() {
  local host port proctrack
  host=$(hostname -s)
  port=${VDM_SLURM_PORT:-6817}
  # cgroup v1 freezer: every process of a job is found and killed; pgid misses what mpirun starts.
  if [ -d /sys/fs/cgroup/freezer ]; then proctrack=proctrack/cgroup; else proctrack=proctrack/pgid; fi
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat > "$CONF" <<EOF
# One-node test cluster written by slurm/local-cluster.sh.
ClusterName=vdmtest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job restarts after ~12 s instead of ~150 s.
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MailProg=/bin/true
MpiDefault=pmix
ProctrackType=$proctrack
TaskPlugin=task/none
# 4 CPUs on 2 cores: a 2-rank job and an array task beside it both fit.
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
InactiveLimit=0
MinJobAge=600
NodeName=$host CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat > "$DIR/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
}

case $cmd in
  start)
    have_packages || { log "Slurm packages missing: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"; exit 77; }
    [ "$(id -u)" -eq 0 ] || { log "must run as root (SlurmUser=root)"; exit 1; }
    if alive "$DIR/slurmctld.pid"; then log "already running in $DIR"; echo "export SLURM_CONF=$CONF"; exit 0; fi
    start_munge
    write_config
    slurmctld -f "$CONF" -i
    slurmd -f "$CONF"
    for _ in $(seq 300); do
      state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
      case $state in idle|mixed|allocated) log "node $(hostname -s) is $state (SLURM_CONF=$CONF)"; echo "export SLURM_CONF=$CONF"; exit 0;; esac
      sleep 0.1
    done
    log "the node did not become idle; logs in $DIR/log"
    tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
    ;;
  stop)
    [ -f "$CONF" ] || { log "no cluster in $DIR"; exit 0; }
    scontrol shutdown >/dev/null 2>&1 || true
    for f in slurmctld.pid slurmd.pid munged.pid; do
      [ -s "$DIR/$f" ] || continue
      pid=$(cat "$DIR/$f")
      if [ "$f" = munged.pid ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then log "${f%.pid} ($pid) still up: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
      rm -f "$DIR/$f"
    done
    log "stopped"
    ;;
  *) usage ;;
esac
