#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, to try examples/slurm/ and for
# tests/test_grading_slurm.py. Needs root, Debian's slurm-wlm and munge (`apt-get install slurm-wlm munge`).
#
#   scripts/slurm_local.sh start DIR   start munged, slurmctld and slurmd (those not already running from DIR)
#                                      and wait until `sinfo` shows the node idle; then prints
#                                      `export SLURM_CONF=DIR/slurm.conf` for sbatch, squeue, sinfo, scancel
#   scripts/slurm_local.sh stop DIR    cancel the cluster's jobs and stop the daemons `start` started
#
# Everything lives in DIR (created if missing; it and its parent folders must be searchable by everyone,
# which munged checks, so use a folder such as /tmp/course-slurm, not a private 0700 temp folder):
# slurm.conf, a fresh munge key, munged's socket, free TCP ports picked at start, spool, state, PID files and
# logs. Nothing is written to /etc and no system daemon is touched, so it can run beside a real cluster.
# SLURM_LOCAL_WAIT (seconds, default 60) bounds the wait for the node.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$2
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
conf="$dir/slurm.conf"
node=$(hostname -s)

die() { echo "slurm_local.sh: $*" >&2; exit 1; }

# The PID in FILE if that process is alive and is the program NAME (a stale file or a reused PID is not).
running_pid() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc 0-9 < "$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  case "$(cat "/proc/$pid/comm")" in "$name"*) echo "$pid" ;; *) return 1 ;; esac
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "found no free TCP port"
}

logs() {
  local f
  for f in munged.log slurmctld.log slurmd.log; do
    [ -f "$dir/$f" ] && { echo "--- $dir/$f (last lines)"; tail -n 15 "$dir/$f"; }
  done >&2
}

write_conf() {
  local mem
  # 90% of the memory slurmd will find (more than it finds would drain the node).
  mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat > "$conf" <<EOF
# Written by scripts/slurm_local.sh: a single-node cluster for this host only.
ClusterName=course-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
# A job whose dependency can never be met (say the merge after a failed shard) ends instead of pending.
SchedulerParameters=kill_invalid_depend
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs jobs as their owner); run it as root or use a running cluster"
  local prog
  for prog in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo /usr/bin/sbatch; do
    [ -x "$prog" ] || die "$prog is missing (apt-get install slurm-wlm munge)"
  done
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
  chmod 755 "$dir" "$dir/munge"
  export SLURM_CONF="$conf"

  if ! running_pid "$dir/munged.pid" munged >/dev/null; then
    if [ ! -s "$dir/munge/munge.key" ]; then
      (umask 077; head -c 1024 /dev/urandom > "$dir/munge/munge.key")
      chmod 400 "$dir/munge/munge.key"
    fi
    /usr/sbin/munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
      --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed" \
      || { logs; die "munged did not start (its log is above)"; }
  fi
  munge -S "$dir/munge/munge.socket" -n | unmunge -S "$dir/munge/munge.socket" >/dev/null \
    || { logs; die "munge -n | unmunge failed on $dir/munge/munge.socket"; }

  local ctld=0 slurmd=0
  running_pid "$dir/slurmctld.pid" slurmctld >/dev/null && ctld=1
  running_pid "$dir/slurmd.pid" slurmd >/dev/null && slurmd=1
  # The ports are in slurm.conf: keep it while a daemon started with it runs.
  if [ $ctld -eq 0 ] && [ $slurmd -eq 0 ]; then write_conf; fi
  [ $ctld -eq 1 ] || /usr/sbin/slurmctld -f "$conf" || { logs; die "slurmctld -f $conf failed"; }
  [ $slurmd -eq 1 ] || /usr/sbin/slurmd -f "$conf" || { logs; die "slurmd -f $conf failed"; }

  local wait=${SLURM_LOCAL_WAIT:-60} state=""
  for _ in $(seq 1 "$wait"); do
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
    [ "$state" = idle ] && { echo "export SLURM_CONF=$conf"; return 0; }
    sleep 1
  done
  logs
  die "after ${wait}s, sinfo still shows node $node as '${state:-nothing}' (not idle); the logs are above"
}

stop() {
  export SLURM_CONF="$conf"
  local pid name
  if running_pid "$dir/slurmctld.pid" slurmctld >/dev/null; then
    # Cancel what is left so that no slurmstepd outlives its slurmd, and give the steps a moment to end.
    squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 1 20); do
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for name in slurmd slurmctld munged; do
    pid=$(running_pid "$dir/$name.pid" "$name") || continue
    kill "$pid"
    for _ in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.25; done
    [ -d "/proc/$pid" ] && kill -9 "$pid"
    rm -f "$dir/$name.pid"
  done
  return 0
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
