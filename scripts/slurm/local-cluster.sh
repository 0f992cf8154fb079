#!/usr/bin/env bash
# local-cluster.sh up|down|status|conf
#
# A real single-node Slurm cluster (munged + slurmctld + slurmd on this host)
# for trying the sweep scripts and for CI.  Debian/Ubuntu only (apt packages
# slurm-wlm and munge); daemons are started directly, not through systemd, so it
# also works in containers whose PID 1 is not systemd.
#
#   up      install packages if missing, write /etc/slurm/slurm.conf, start the
#           daemons, wait until the node is idle.  Safe to run again.
#   down    stop slurmd, slurmctld and munged.
#   status  print daemon pids and sinfo; exit 0 only if the node is usable.
#   conf    print the slurm.conf that `up` would write.
#
# Environment:
#   SLURM_LOCAL_TIMEOUT   seconds to wait for the node to become idle (60)
#   SLURM_LOCAL_MEM_MARGIN_MB  memory kept back from Slurm (default: 10% of
#                         MemTotal, at least 512 MB)
#   SLURM_LOCAL_NODE      node name (default: short hostname)
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
NODE=${SLURM_LOCAL_NODE:-$(hostname -s)}
PACKAGES=(slurm-wlm munge)

die() { echo "local-cluster: error: $*" >&2; exit 1; }
say() { echo "local-cluster: $*"; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "'$1' must run as root (try: sudo $0 $1)"
}

# pid_alive PIDFILE NAME: true if PIDFILE names a live process called NAME.
pid_alive() {
    local f=$1 name=$2 pid
    [[ -r $f ]] || return 1
    pid=$(<"$f") || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$name" ]] || return 1
    # A killed daemon can linger as a zombie until something reaps it.
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

pid_of() { cat "$1" 2>/dev/null || true; }

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "local-cluster: missing packages: ${missing[*]}; install them as root with:" >&2
        echo "  $cmd" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating $MUNGE_KEY"
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
    # munged refuses keys readable by anyone but its owner.
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    if pid_alive "$MUNGE_PID" munged; then
        return 0
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged
    say "started munged"
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 20 /var/log/munge/munged.log >&2 || true
    die "munged did not come up"
}

# render_conf: print slurm.conf for this machine on stdout.
render_conf() {
    local cpus mem_kb mem_mb margin real defmem
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb / 1024))
    margin=${SLURM_LOCAL_MEM_MARGIN_MB:-$((mem_mb / 10))}
    ((margin < 512)) && margin=512
    real=$((mem_mb - margin))
    ((real < 256)) && real=256
    # Without a default, every job would be given the whole node's memory and
    # array elements could never run side by side.
    defmem=$((real / cpus))
    cat <<EOF
# Written by scripts/slurm/local-cluster.sh -- single-node test cluster.
ClusterName=cavforge-local
# NodeAddr/SlurmctldHost address pinned to loopback: no DNS or /etc/hosts needed.
SlurmctldHost=${NODE}(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
StateSaveLocation=${CTLD_SPOOL}
SlurmdSpoolDir=${SLURMD_SPOOL}
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# No mail on this box; the default /bin/mail is usually absent.
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${defmem}
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=30
KillWait=10
Waittime=0
NodeName=${NODE} NodeAddr=127.0.0.1 NodeHostname=${NODE} CPUs=${cpus} RealMemory=${real} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
}

stop_daemon() { # stop_daemon PIDFILE NAME
    local f=$1 name=$2 pid
    pid_alive "$f" "$name" || { rm -f "$f"; return 0; }
    pid=$(<"$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        [[ -d /proc/$pid ]] || { rm -f "$f"; say "stopped $name ($pid)"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
    say "killed $name ($pid)"
}

node_state() {
    sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1
}

show_logs() {
    local f
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
        [[ -r $f ]] || continue
        echo "---- tail $f" >&2
        tail -n 25 "$f" >&2
    done
}

cmd_up() {
    local t0=$SECONDS
    ensure_packages # prints the apt command when not root
    need_root up
    ensure_munge

    install -d -m 0755 "$CONF_DIR"
    install -d -o slurm -g slurm -m 0755 "$LOG_DIR" "$CTLD_SPOOL"
    install -d -o root -g root -m 0755 "$SLURMD_SPOOL"

    local new changed=0
    new=$(render_conf)
    if [[ ! -f $CONF ]] || [[ "$(cat "$CONF")" != "$new" ]]; then
        printf '%s\n' "$new" >"$CONF.tmp"
        chmod 0644 "$CONF.tmp"
        mv "$CONF.tmp" "$CONF"
        changed=1
        say "wrote $CONF"
    fi
    if ((changed)); then
        # Daemons started with an old config must be restarted to see the new one.
        stop_daemon "$SLURMD_PID" slurmd
        stop_daemon "$CTLD_PID" slurmctld
    fi

    if ! pid_alive "$CTLD_PID" slurmctld; then
        /usr/sbin/slurmctld -f "$CONF"
        say "started slurmctld"
    fi
    if ! pid_alive "$SLURMD_PID" slurmd; then
        /usr/sbin/slurmd -f "$CONF" -N "$NODE"
        say "started slurmd"
    fi

    local state deadline=$((SECONDS + TIMEOUT)) resumed=0
    while :; do
        state=$(node_state || true)
        case $state in
            idle | mixed | allocated | completing) break ;;
            *drain* | down*)
                # A drained/down node left over from an earlier run.
                if ((!resumed)); then
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        if ((SECONDS >= deadline)); then
            echo "local-cluster: error: node $NODE not idle after ${TIMEOUT}s (state: '${state:-unknown}')" >&2
            sinfo -N -l >&2 2>/dev/null || true
            scontrol show node "$NODE" 2>/dev/null | grep -E 'State|Reason' >&2 || true
            show_logs
            exit 1
        fi
        sleep 0.5
    done
    say "up: node $NODE is $state (cluster cavforge-local, partition debug) in $((SECONDS - t0))s"
}

cmd_down() {
    need_root down
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
    stop_daemon "$MUNGE_PID" munged
    # Job steps are not children of slurmd once it is gone; leave them be,
    # but say so.
    if pgrep -x slurmstepd >/dev/null 2>&1; then
        say "note: slurmstepd processes are still running (jobs that were active)"
    fi
    say "down"
}

cmd_status() {
    local ok=0 d f
    for d in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
        f=${d#*:}
        if pid_alive "$f" "${d%%:*}"; then
            printf '%-10s running (pid %s)\n' "${d%%:*}" "$(pid_of "$f")"
        else
            printf '%-10s stopped\n' "${d%%:*}"
            ok=1
        fi
    done
    if ((ok == 0)); then
        sinfo || ok=1
        case $(node_state || true) in
            idle | mixed | allocated | completing) ;;
            *) ok=1 ;;
        esac
    fi
    return $ok
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    conf) render_conf ;;
    *)
        echo "usage: $0 up|down|status|conf" >&2
        exit 2
        ;;
esac
