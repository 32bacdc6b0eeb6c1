#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (for tests/test_slurm.py and docs/cluster.md).
#
# Idempotent: installs slurm-wlm and munge when missing, writes the munge key and slurm.conf
# only when absent, starts munged, slurmctld and slurmd only when they are not running, then
# waits until `sinfo` shows the node idle. Needs root (or sudo) and the Debian package archive.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
NODE="$(hostname -s)"
CONF=/etc/slurm/slurm.conf
WAIT_S="${SLURM_START_TIMEOUT_S:-120}"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mkdir -p /etc/munge
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 400 /etc/munge/munge.key
fi
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
if ! pgrep -x munged >/dev/null; then
    $SUDO munged --force
fi

$SUDO mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
if [ ! -f "$CONF" ]; then
    total_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    memory_mb=$(( total_mb > 4096 ? total_mb - 2048 : total_mb / 2 ))
    $SUDO tee "$CONF" >/dev/null <<CONFIG
ClusterName=local
SlurmctldHost=${NODE}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
KillWait=30
NodeName=${NODE} CPUs=$(nproc) RealMemory=${memory_mb} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONFIG
fi

if ! pgrep -x slurmctld >/dev/null; then
    $SUDO slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
    $SUDO slurmd
fi

deadline=$(( $(date +%s) + WAIT_S ))
until sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "start_slurm.sh: the node did not become idle within ${WAIT_S}s" >&2
        sinfo -N -l >&2 || true
        exit 1
    fi
    # A node left down by an earlier unclean stop comes back with ReturnToService=2 once its
    # slurmd registers; this covers a state file that still says down.
    $SUDO scontrol update nodename="${NODE}" state=resume >/dev/null 2>&1 || true
    sleep 1
done
sinfo -N
