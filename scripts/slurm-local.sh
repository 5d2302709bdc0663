#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for testing `hsx run --executor slurm` (docs/slurm.md).
#
#   scripts/slurm-local.sh install     apt-get install slurm-wlm and munge (root; Debian/Ubuntu)
#   scripts/slurm-local.sh ensure      install them only when a command is missing
#   scripts/slurm-local.sh start DIR   write DIR/slurm.conf, start munged (unless one runs), slurmctld
#                                      and slurmd; wait until the node is idle
#   scripts/slurm-local.sh stop DIR    stop the daemons this script started (by their process ids)
#
# Clients (sbatch, squeue, scontrol, and hsx, which calls them) find the cluster through
# SLURM_CONF=DIR/slurm.conf. The daemons run as root (no systemd). There is no accounting daemon:
# the record of finished jobs is the jobcomp/filetxt log, DIR/jobcomp.log (one line per job: id, name,
# state, start and end times), and `scontrol show job` while Slurm remembers a job (MinJobAge).
set -euo pipefail
# The daemons live in sbin, which a non-login PATH may leave out.
export PATH="$PATH:/usr/sbin:/sbin"

usage() { sed -n '2,13p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
cmd=$1

missing_commands() {
    for c in munged munge unmunge slurmctld slurmd sinfo sbatch squeue scontrol scancel; do
        command -v "$c" >/dev/null || echo "$c"
    done
}

need() {
    local missing=($(missing_commands))
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "slurm-local: missing ${missing[*]}; run: scripts/slurm-local.sh install (apt-get install slurm-wlm munge)" >&2
        exit 1
    fi
}

case "$cmd" in
install)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    need
    echo "slurm-local: installed $(slurmctld -V) and $(munged --version 2>&1 | head -1)"
    ;;
ensure)
    if [[ -n "$(missing_commands)" ]]; then
        "$0" install
    fi
    ;;
start)
    [[ $# -eq 2 ]] || usage
    need
    dir=$(mkdir -p "$2" && cd "$2" && pwd)
    mkdir -p "$dir/state" "$dir/spool"
    # MUNGE: a key (1,024 random bytes, owner munge, mode 0400) and its directories, then the daemon.
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        if [[ ! -s /etc/munge/munge.key ]]; then
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
        chmod 0400 /etc/munge/munge.key
        runuser -u munge -- /usr/sbin/munged --force
        for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
        cp /run/munge/munged.pid "$dir/munged.pid"
    fi
    munge -n | unmunge | grep -q 'STATUS: *Success' || { echo "slurm-local: munge does not work" >&2; exit 1; }
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    cat > "$dir/slurm.conf" <<EOF
# A one-node cluster on loopback, written by scripts/slurm-local.sh.
ClusterName=hsx-local
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
MinJobAge=3600
SchedulerParameters=sched_interval=1
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" -i
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
        [[ "$state" == idle ]] && break
        sleep 0.5
    done
    if [[ "${state:-}" != idle ]]; then
        echo "slurm-local: the node is not idle (state '${state:-none}'); logs: $dir/slurmctld.log $dir/slurmd.log" >&2
        exit 1
    fi
    echo "slurm-local: one-node cluster up ($host, $cpus CPUs, ${mem_mb} MB); export SLURM_CONF=$dir/slurm.conf"
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    dir=$(cd "$2" && pwd)
    for d in slurmd slurmctld munged; do
        f="$dir/$d.pid"
        [[ -s "$f" ]] || continue
        pid=$(cat "$f")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
    echo "slurm-local: stopped"
    ;;
*) usage ;;
esac
