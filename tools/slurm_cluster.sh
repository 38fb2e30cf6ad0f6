#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, all of its state under one directory.
#
# Usage: tools/slurm_cluster.sh start|stop|status DIR
#
#   start   writes DIR/slurm.conf + DIR/gres.conf (node = `hostname -s` at 127.0.0.1, CPUs = nproc,
#           RealMemory = MemTotal minus headroom, partitions cpu (default) and gpu, two fake GPUs
#           backed by character devices DIR/nvidia0 and DIR/nvidia1), starts munged (unless one is
#           already running), slurmctld and slurmd, waits until `sinfo` shows the node idle, then
#           prints `export SLURM_CONF=DIR/slurm.conf` on stdout (progress goes to stderr), so
#               eval "$(tools/slurm_cluster.sh start /tmp/slurm)"
#           leaves the current shell talking to the new cluster. Starting a running cluster is a no-op.
#   stop    waits (at most SLURM_CLUSTER_DRAIN_S seconds, default 30) for the queue to drain, cancels
#           what is left, then stops slurmd, slurmctld (and munged only if `start` started it) by the
#           PIDs in their pid files, and kills any slurmstepd left by this cluster's slurmd.
#   status  says which daemons run, shows sinfo and squeue; exit 0 when the cluster is up, 1 if not.
#
# Needs root (slurmd launches jobs; munged is started as the munge user) and the Debian packages
# slurm-wlm and munge, which tools/install_system.sh installs. Ports: the first free pair from
# 6817/6818 upwards, so two clusters (two test sessions) can run side by side.
set -euo pipefail

log() { echo "[slurm_cluster] $*" >&2; }
die() { echo "[slurm_cluster] ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }

case "${1:-}" in -h|--help) usage; exit 0;; esac
[ $# -eq 2 ] || { usage; die "expected 2 arguments (start|stop|status DIR), got $#"; }
action=$1
case "${action}" in start|stop|status) ;; *) usage; die "unknown action '${action}' (start|stop|status)";; esac
[ -n "$2" ] || die "DIR is empty"
if [ "${action}" = start ]; then
  mkdir -p "$2" || die "cannot create ${2}"
elif [ ! -d "$2" ]; then
  [ "${action}" = stop ] && { log "no cluster directory $2: nothing to stop"; exit 0; }
  die "no cluster directory $2 (start one with: $0 start $2)"
fi
dir=$(cd "$2" && pwd)
conf=${dir}/slurm.conf
ctld_pidfile=${dir}/run/slurmctld.pid
slurmd_pidfile=${dir}/run/slurmd.pid
munge_marker=${dir}/run/munged.started_here   # holds the PID of a munged that `start` started
export SLURM_CONF=${conf}

for b in slurmctld slurmd slurmstepd; do
  [ -x "/usr/sbin/${b}" ] || command -v "${b}" >/dev/null \
    || die "${b} not found: Slurm is not installed. tools/install_system.sh installs slurm-wlm and munge (needs root)."
done
for b in sbatch squeue sinfo scontrol scancel; do
  command -v "${b}" >/dev/null \
    || die "${b} not found: Slurm is not installed. tools/install_system.sh installs slurm-wlm and munge (needs root)."
done
sbin() { if [ -x "/usr/sbin/$1" ]; then echo "/usr/sbin/$1"; else command -v "$1"; fi; }

pid_alive() {  # pid_alive PIDFILE -> 0 when the file names a live process
  local pid
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' < "$1")
  [ -n "${pid}" ] && kill -0 "${pid}" 2>/dev/null
}

stop_pid() {  # stop_pid NAME PID: SIGTERM, wait up to 10 s, then SIGKILL
  local name=$1 pid=$2 i
  kill -0 "${pid}" 2>/dev/null || { log "${name} (pid ${pid}) already gone"; return 0; }
  log "stopping ${name} (pid ${pid})"
  kill -TERM "${pid}" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "${pid}" 2>/dev/null || return 0; sleep 0.1; done
  log "${name} (pid ${pid}) ignored SIGTERM for 10 s: SIGKILL"
  kill -KILL "${pid}" 2>/dev/null || true
}

show_logs() {
  local f
  for f in "${dir}"/log/slurmctld.log "${dir}"/log/slurmd.log; do
    [ -f "${f}" ] && { echo "----- last lines of ${f}" >&2; tail -n 25 "${f}" >&2; }
  done
  return 0
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

munge_works() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

cluster_up() { pid_alive "${ctld_pidfile}" && pid_alive "${slurmd_pidfile}"; }

do_status() {
  local up=0
  if pid_alive "${ctld_pidfile}"; then log "slurmctld running (pid $(cat "${ctld_pidfile}"))"; else log "slurmctld not running"; up=1; fi
  if pid_alive "${slurmd_pidfile}"; then log "slurmd running (pid $(cat "${slurmd_pidfile}"))"; else log "slurmd not running"; up=1; fi
  if munge_works; then log "munged answers"; else log "munged does not answer"; up=1; fi
  if [ ${up} -eq 0 ]; then
    sinfo >&2 || true
    squeue >&2 || true
    echo "export SLURM_CONF=${conf}"
  fi
  return ${up}
}

start_munge() {
  if munge_works; then log "munged already running: using it"; return 0; fi
  command -v munge >/dev/null || die "munge not found: tools/install_system.sh installs slurm-wlm and munge (needs root)"
  [ "$(id -u)" -eq 0 ] || die "munged is not running and only root can start it (runuser -u munge); run as root or start munged first"
  log "starting munged as user munge (socket under /run/munge)"
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  runuser -u munge -- "$(sbin munged)" || die "munged failed to start (see /var/log/munge/munged.log)"
  local i
  for i in $(seq 1 50); do munge_works && break; sleep 0.1; done
  munge_works || die "munged started but does not answer (see /var/log/munge/munged.log)"
  tr -dc '0-9' < /run/munge/munged.pid > "${munge_marker}"
  log "munged running (pid $(cat "${munge_marker}"))"
}

write_config() {
  local node cpus mem_kb mem_mb headroom ctld_port slurmd_port user
  node=$(hostname -s)
  cpus=$(nproc)
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  mem_mb=$((mem_kb / 1024))
  headroom=$((mem_mb / 10)); [ ${headroom} -lt 512 ] && headroom=512
  mem_mb=$((mem_mb - headroom)); [ ${mem_mb} -lt 1024 ] && mem_mb=1024
  user=$(id -un)
  ctld_port=6817
  while port_in_use "${ctld_port}" || port_in_use "$((ctld_port + 1))"; do
    ctld_port=$((ctld_port + 2))
    [ ${ctld_port} -lt 6917 ] || die "no free port pair between 6817 and 6917"
  done
  slurmd_port=$((ctld_port + 1))
  log "node ${node}: CPUs=${cpus} RealMemory=${mem_mb} MB (MemTotal minus ${headroom} MB), 2 fake GPUs; ports ${ctld_port}/${slurmd_port}"

  local d
  for d in 0 1; do
    if [ ! -c "${dir}/nvidia${d}" ]; then
      rm -f "${dir}/nvidia${d}"
      mknod "${dir}/nvidia${d}" c 1 3 || die "mknod ${dir}/nvidia${d} failed (needs root)"
    fi
  done
  cat > "${dir}/gres.conf" <<EOF
# Written by tools/slurm_cluster.sh: two fake GPUs (character devices) for --gres=gpu:N tests.
AutoDetect=off
NodeName=${node} Name=gpu File=${dir}/nvidia0
NodeName=${node} Name=gpu File=${dir}/nvidia1
EOF
  cat > "${conf}" <<EOF
# Written by tools/slurm_cluster.sh on $(date): a single-node cluster on localhost.
ClusterName=ualmtk
SlurmctldHost=localhost
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=${user}
SlurmdUser=${user}
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=200000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=${dir}/log/jobcomp.txt
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${ctld_pidfile}
SlurmdPidFile=${slurmd_pidfile}
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=600
KillWait=5
ReturnToService=2
MailProg=/bin/true
GresTypes=gpu
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=${node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${node} Default=NO MaxTime=INFINITE State=UP
EOF
}

do_start() {
  if cluster_up; then
    log "cluster in ${dir} already running"
    echo "export SLURM_CONF=${conf}"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "starting slurmd needs root (it launches jobs as their owner); run as root"
  log "starting a single-node Slurm cluster in ${dir}"
  mkdir -p "${dir}/state" "${dir}/spool" "${dir}/log" "${dir}/run"
  start_munge
  write_config
  log "starting slurmctld (log ${dir}/log/slurmctld.log)"
  "$(sbin slurmctld)" -c -i || { show_logs; die "slurmctld failed to start"; }
  log "starting slurmd (log ${dir}/log/slurmd.log)"
  "$(sbin slurmd)" || { show_logs; die "slurmd failed to start"; }
  local i state=""
  for i in $(seq 1 300); do
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n 1 || true)
    [ "${state}" = "idle" ] && break
    sleep 0.1
  done
  if [ "${state}" != "idle" ]; then
    show_logs
    die "node not idle 30 s after start (sinfo says '${state}'); the daemon logs are above. Stop with: $0 stop ${dir}"
  fi
  log "node $(hostname -s) idle; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
  echo "export SLURM_CONF=${conf}"
}

kill_our_stepds() {  # slurmstepd processes whose environment names this cluster's SLURM_CONF
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "${p}/comm" 2>/dev/null || true)" = "slurmstepd" ] || continue
    if tr '\0' '\n' < "${p}/environ" 2>/dev/null | grep -qxF "SLURM_CONF=${conf}"; then
      log "killing leftover slurmstepd (pid ${p#/proc/})"
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

do_stop() {
  local drain=${SLURM_CLUSTER_DRAIN_S:-30} i jobs
  [[ "${drain}" =~ ^[0-9]+$ ]] || die "SLURM_CLUSTER_DRAIN_S must be a whole number of seconds, got '${drain}'"
  if pid_alive "${ctld_pidfile}"; then
    log "waiting up to ${drain} s for the queue to drain"
    for ((i = 0; i < drain * 10; i++)); do
      jobs=$(squeue -h -o '%i' 2>/dev/null || true)
      [ -z "${jobs}" ] && break
      sleep 0.1
    done
    jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [ -n "${jobs// /}" ]; then
      log "queue not empty after ${drain} s: cancelling jobs ${jobs}"
      # shellcheck disable=SC2086
      scancel ${jobs} || true
      for i in $(seq 1 100); do [ -z "$(squeue -h -o '%i' 2>/dev/null || true)" ] && break; sleep 0.1; done
    fi
  else
    log "slurmctld not running"
  fi
  if [ -s "${slurmd_pidfile}" ]; then stop_pid slurmd "$(tr -dc '0-9' < "${slurmd_pidfile}")"; rm -f "${slurmd_pidfile}"; fi
  if [ -s "${ctld_pidfile}" ]; then stop_pid slurmctld "$(tr -dc '0-9' < "${ctld_pidfile}")"; rm -f "${ctld_pidfile}"; fi
  kill_our_stepds
  if [ -s "${munge_marker}" ]; then
    local mpid
    mpid=$(tr -dc '0-9' < "${munge_marker}")
    if [ -n "$(pgrep -x slurmctld || true)$(pgrep -x slurmd || true)" ]; then
      log "munged (pid ${mpid}) left running: other Slurm daemons on this machine still use it"
    else
      stop_pid munged "${mpid}"
    fi
    rm -f "${munge_marker}"
  fi
  log "cluster in ${dir} stopped"
}

case "${action}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
esac
