#!/usr/bin/env bash
# Starts and stops a real Slurm cluster (munged + slurmctld + slurmd) on a test box, as root, with
# its config, state and logs under DIR; the integration tests run `vdm submit` and `vdm sweep`
# against it. Facts behind the settings: ../shared/notes/slurm-local.md.
#
#   slurm/local-cluster.sh start DIR [--nodes N]  # prints the line to eval: export SLURM_CONF=...
#   slurm/local-cluster.sh stop DIR               # daemons by their pid files; namespaces, links
#   slurm/local-cluster.sh exec DIR [--node NAME] CMD...  # multi-node: run CMD on the login host
#   slurm/local-cluster.sh kill-node DIR NAME     # multi-node: SIGKILL all of a node, as a power cut
#   slurm/local-cluster.sh check                  # exit 0 if the Slurm and munge packages are there
#
# One node (the default): slurmctld and slurmd on this host, under its own hostname.
# --nodes N >= 2: N hosts on this box. Each node is a network namespace (an address on a private
# bridge) and a UTS namespace (hostname node0..N-1) running its own slurmd; slurmctld runs on a
# login host, one more namespace (hostname vdmctl), where `exec` runs the clients (sbatch, srun,
# vdm submit). munged is shared (its socket is a file), and so is the file system, as on a
# cluster. Every address lives only inside the namespaces made here; this host gets none. Needs
# root and iproute2 (ip netns) on a kernel with network namespaces; where they cannot be made,
# start exits 77 with the reason.
#
# VDM_SLURM_PORT (default 6817) picks slurmctld's port; slurmd takes the next one, so a test
# cluster can run beside another one.
set -euo pipefail

usage() { echo "usage: $0 start DIR [--nodes N] | stop DIR | exec DIR [--node NAME] CMD... | kill-node DIR NAME | check" >&2; exit 2; }
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
[ $# -ge 2 ] || usage
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
shift 2
NODES=1
if [ "$cmd" = start ] && [ $# -gt 0 ]; then
  [ "$1" = --nodes ] && [ $# -eq 2 ] && [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le 64 ] || usage
  NODES=$2
fi
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
export PATH=$PATH:/usr/sbin
# Names of the multi-node pieces come from DIR, so two test clusters never share one; Linux caps
# interface names at 15 characters.
ID=$(printf %s "$DIR" | md5sum | cut -c1-6)
BRIDGE=vdmb$ID
NET=10.213.$(( 0x${ID:0:2} % 250 + 1 ))
netns_of() { echo "vdm-$ID-$1"; }   # login | node0 ...

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

# slurm.conf and cgroup.conf for either layout. $1: SlurmctldHost; $2: ProctrackType; $3: the
# slurmd lines (spool, pid file, log; more for several nodes); $4: the NodeName lines; $5: the
# partition's nodes.
write_config() {
  local port=${VDM_SLURM_PORT:-6817}
  mkdir -p "$DIR/state" "$DIR/log"
  cat > "$CONF" <<EOF
# Test cluster written by slurm/local-cluster.sh.
ClusterName=vdmtest
SlurmctldHost=$1
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job restarts after ~12 s instead of ~150 s.
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
$3
MailProg=/bin/true
MpiDefault=pmix
ProctrackType=$2
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
$4
PartitionName=debug Nodes=$5 Default=YES MaxTime=INFINITE State=UP
EOF
  # slurmd reads cgroup.conf whatever the proctrack plugin; without one it fails to start.
  cat > "$DIR/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
}

write_one_node_config() {
  local host proctrack
  host=$(hostname -s)
  # cgroup v1 freezer: every process of a job is found and killed; pgid misses what mpirun starts.
  if [ -d /sys/fs/cgroup/freezer ]; then proctrack=proctrack/cgroup; else proctrack=proctrack/pgid; fi
  mkdir -p "$DIR/spool"
  write_config "$host" "$proctrack" "SlurmdSpoolDir=$DIR/spool
SlurmdPidFile=$DIR/slurmd.pid
SlurmdLogFile=$DIR/log/slurmd.log" "NodeName=$host CPUs=4 State=UNKNOWN" "$host"
}

# Multi-node: the login host (slurmctld) at .1, node i at .(i+2), one veth each into the bridge.
# Each piece goes into DIR/multinode.state as soon as it exists, so that stop removes exactly what
# start made, also after a start that failed half-way.
make_hosts() {
  command -v ip >/dev/null && command -v unshare >/dev/null || { log "the multi-node cluster needs iproute2 and util-linux (ip, unshare)"; exit 77; }
  if ! ip netns add "$(netns_of probe)" 2>"$DIR/log/netns.err"; then
    log "cannot create network namespaces here ($(cat "$DIR/log/netns.err")): the multi-node test bed needs root on a kernel with network namespaces"
    exit 77
  fi
  ip netns del "$(netns_of probe)"
  : > "$DIR/multinode.state"
  if ! ip link add "$BRIDGE" type bridge 2>"$DIR/log/netns.err"; then
    log "cannot create a bridge here ($(cat "$DIR/log/netns.err")): the multi-node test bed needs one to join its nodes"
    rm -f "$DIR/multinode.state"
    exit 77
  fi
  echo "link $BRIDGE" >> "$DIR/multinode.state"
  ip link set "$BRIDGE" up
  local i=0 host ns veth
  for host in login $(seq -f 'node%g' 0 $((NODES - 1))); do
    ns=$(netns_of "$host")
    veth=vdm${ID}h$i
    ip netns add "$ns"
    echo "netns $ns" >> "$DIR/multinode.state"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$NET.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    i=$((i + 1))
  done
}

# Runs a daemon or a client on a host: in its network namespace, under its own hostname.
on_host() {
  local host=$1 name=$1
  shift
  [ "$host" = login ] && name=vdmctl
  ip netns exec "$(netns_of "$host")" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$name" "$@"
}

write_multinode_config() {
  local i nodes=""
  for i in $(seq 0 $((NODES - 1))); do
    mkdir -p "$DIR/spool-node$i" "$DIR/tmp-node$i"
    nodes+="${nodes:+$'\n'}NodeName=node$i NodeAddr=$NET.$((i + 2)) NodeHostname=node$i CPUs=4 State=UNKNOWN"
  done
  # One slurmd per node on one box: %n gives each its own spool, pid file, log and TmpFS (where the
  # PMIx plugin makes its per-node directories; one shared /tmp would collide). The cgroup
  # freezer is not used: several slurmd on one box would share its hierarchy. A node whose
  # slurmd is gone is marked down after SlurmdTimeout seconds, and its jobs end.
  write_config "vdmctl($NET.1)" proctrack/pgid "SlurmdSpoolDir=$DIR/spool-%n
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmdLogFile=$DIR/log/slurmd-%n.log
TmpFS=$DIR/tmp-%n
SlurmdTimeout=10" "$nodes" "node[0-$((NODES - 1))]"
}

start_multinode() {
  mkdir -p "$DIR/log"
  make_hosts
  start_munge
  write_multinode_config
  on_host login slurmctld -f "$CONF" -i
  local i
  for i in $(seq 0 $((NODES - 1))); do on_host "node$i" slurmd -f "$CONF" -N "node$i"; done
  for _ in $(seq 300); do
    if [ "$(on_host login sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed|allocated)$' || true)" -eq "$NODES" ]; then
      log "$NODES nodes idle (node0..node$((NODES - 1)) on $NET.0/24; clients: $0 exec $DIR CMD...)"
      echo "export SLURM_CONF=$CONF"
      exit 0
    fi
    sleep 0.2
  done
  log "the nodes did not become idle; logs in $DIR/log"
  tail -5 "$DIR/log/slurmctld.log" "$DIR"/log/slurmd-node*.log >&2 || true
  exit 1
}

stop_pid_file() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$(basename "$f" .pid) ($pid) still up: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$f"
}

stop_multinode() {
  on_host login scontrol shutdown >/dev/null 2>&1 || true
  local f kind name pid
  for f in "$DIR"/slurmctld.pid "$DIR"/slurmd-*.pid; do stop_pid_file "$f"; done
  # Whatever still runs in a namespace made here (the job steps of a killed node) goes with it.
  while read -r kind name; do
    [ "$kind" = netns ] || continue
    for pid in $(ip netns pids "$name" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done < "$DIR/multinode.state"
  while read -r kind name; do
    case $kind in
      netns) ip netns del "$name" 2>/dev/null || true ;;
      link) ip link del "$name" 2>/dev/null || true ;;
    esac
  done < "$DIR/multinode.state"
  rm -f "$DIR/multinode.state"
  stop_munged
  log "stopped; namespaces and links removed"
}

# Only the munged this script started has a pid file here.
stop_munged() {
  if [ -s "$DIR/munged.pid" ]; then kill "$(cat "$DIR/munged.pid")" 2>/dev/null || true; fi
  stop_pid_file "$DIR/munged.pid"
}

case $cmd in
  kill-node)
    [ -f "$DIR/multinode.state" ] && [ $# -eq 1 ] || usage
    ns=$(netns_of "$1")
    grep -qx "netns $ns" "$DIR/multinode.state" || { log "no node $1 in $DIR"; exit 1; }
    pids=$(ip netns pids "$ns")
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    log "killed node $1: $(echo $pids | wc -w) process(es)"
    ;;
  exec)
    [ -f "$DIR/multinode.state" ] || { log "no multi-node cluster in $DIR"; exit 1; }
    host=login
    if [ "${1:-}" = --node ]; then host=$2; shift 2; fi
    [ $# -gt 0 ] || usage
    on_host "$host" env SLURM_CONF="$CONF" "$@"
    ;;
  start)
    if [ "$NODES" -gt 1 ]; then
      have_packages || { log "Slurm packages missing: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"; exit 77; }
      [ "$(id -u)" -eq 0 ] || { log "must run as root (network namespaces, SlurmUser=root)"; exit 77; }
      [ ! -f "$DIR/multinode.state" ] || { log "a cluster already runs in $DIR; stop it first"; exit 1; }
      start_multinode
    fi
    have_packages || { log "Slurm packages missing: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"; exit 77; }
    [ "$(id -u)" -eq 0 ] || { log "must run as root (SlurmUser=root)"; exit 1; }
    if alive "$DIR/slurmctld.pid"; then log "already running in $DIR"; echo "export SLURM_CONF=$CONF"; exit 0; fi
    start_munge
    write_one_node_config
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
    if [ -f "$DIR/multinode.state" ]; then stop_multinode; exit 0; fi
    scontrol shutdown >/dev/null 2>&1 || true
    stop_pid_file "$DIR/slurmctld.pid"
    stop_pid_file "$DIR/slurmd.pid"
    stop_munged
    log "stopped"
    ;;
  *) usage ;;
esac
