#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the launcher tests (and for trying
# hydra/launcher=slurm without a cluster):  bash tests/cluster/slurm_up.sh [down]
#
# Installs Debian's slurmctld, slurmd, slurm-client and munge when missing (needs root), declares two
# GPUs as gres on dummy character devices (SLURM then sets CUDA_VISIBLE_DEVICES per job), and starts
# munged, slurmctld and slurmd. cred_expire=10 lets a re-queued job start again after ~10 s instead of
# 2 minutes. Idempotent: a cluster that already answers is left as it is. Exit 0 when `sinfo` shows the
# node idle; otherwise one line on stderr saying why.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/mixsep-slurm
LOG=/var/log/mixsep-slurm

down() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  for _ in $(seq 50); do pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break; sleep 0.1; done
}

if [[ "${1:-up}" == down ]]; then down; exit 0; fi

if [[ $(id -u) -ne 0 ]]; then echo "slurm_up: needs root (apt-get, mknod, daemons)" >&2; exit 1; fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q slurmctld slurmd slurm-client munge; } >"${TMPDIR:-/tmp}/slurm_apt.log" 2>&1 \
    || { echo "slurm_up: apt-get install of slurmctld slurmd slurm-client munge failed (see ${TMPDIR:-/tmp}/slurm_apt.log)" >&2; exit 1; }
fi

host=$(hostname -s)
if sinfo -h -N -o '%N %t' 2>/dev/null | grep -Eq "^$host (idle|mix|alloc)" \
  && sinfo -h -o '%P' 2>/dev/null | grep -q '^gpu'; then exit 0; fi   # up, with this script's partition
down

mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOG"
for i in 0 1; do [[ -e /dev/mixsep_gpu$i ]] || mknod /dev/mixsep_gpu$i c 1 3; done

# munge: a key and the daemon (Debian's package makes the key; make one where it did not)
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged || { echo "slurm_up: munged did not start" >&2; exit 1; }
fi

read -r cpus mem < <(slurmd -C | awk '/^NodeName/ {for (i=1;i<=NF;i++) {split($i,a,"="); v[a[1]]=a[2]}; print v["CPUs"], v["RealMemory"]}')
cat >"$CONF_DIR/slurm.conf" <<CONF
# written by mixsep's tests/cluster/slurm_up.sh
ClusterName=mixsep
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
JobCompType=jobcomp/none
SchedulerParameters=sched_interval=2
MinJobAge=300
KillWait=10
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
echo "NodeName=$host Name=gpu File=/dev/mixsep_gpu[0-1]" >"$CONF_DIR/gres.conf"
rm -f "$CONF_DIR/cgroup.conf"

slurmctld -c -i || { echo "slurm_up: slurmctld did not start (see $LOG/slurmctld.log)" >&2; exit 1; }
slurmd || { echo "slurm_up: slurmd did not start (see $LOG/slurmd.log)" >&2; exit 1; }
for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%t' -n "$host" 2>/dev/null || true)
  [[ "$state" == idle ]] && exit 0
  [[ "$state" == down* || "$state" == drain* ]] && scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 0.5
done
echo "slurm_up: node $host is not idle after 30 s (state: ${state:-none}; see $LOG/)" >&2
exit 1
