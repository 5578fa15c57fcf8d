#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for `dgc train-all --launcher slurm` and its tests
# (tests/test_slurm.py): Debian's slurm-wlm (slurmctld + slurmd, one CPU-only node `localhost` in
# partition `debug`), munge for authentication, and slurmdbd on MariaDB for accounting (submitit
# reads job states with `sacct`). Debian 12, as root: installs the packages when they are missing,
# writes the configuration, starts every daemon that is not running and waits until the node is
# idle. Idempotent: run it again, it checks and starts only what is down (a new machine, a reboot,
# a later session whose processes are gone). `bash .ci/slurm.sh --stop` stops the daemons again.
# It refuses to touch a machine whose /etc/slurm/slurm.conf it did not write (a real cluster).
set -euo pipefail

MARK="# written by dgc .ci/slurm.sh"
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
LOG=/var/log/slurm
CLUSTER=dgc-local
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

say() { echo "slurm.sh: $*"; }
fail() { echo "slurm.sh: error: $*" >&2; exit 1; }
# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every half second until it succeeds
wait_for() {
    local seconds=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) >= deadline )); then
            fail "$what not ready after ${seconds} s (logs: $LOG/, /var/log/munge/, $LOG/mariadb.log)"
        fi
        sleep 0.5
    done
}
# running NAME: a live process of that name (a zombie left by a daemon's fork does not count)
running() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }

[[ $(id -u) == 0 ]] || fail "run as root (it installs packages and starts system daemons)"
if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    fail "$CONF exists and was not written by this script: this machine has a Slurm of its own; use it"
fi

if [[ ${1:-} == --stop ]]; then
    for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
        pkill -x "$daemon" || continue
        for _ in $(seq 60); do running "$daemon" || break; sleep 0.5; done
        running "$daemon" && fail "$daemon did not stop in 30 s"
        say "stopped $daemon"
    done
    exit 0
fi

# 1. Packages (Debian's, no compilation).
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# 2. Configuration: this machine as the one node, with the CPUs and memory slurmd detects.
read -r cpus memory < <(slurmd -C | awk '/^NodeName/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["CPUs"], v["RealMemory"] }')
memory=$(( memory * 9 / 10 ))  # headroom: a node reporting less memory than configured is drained
mkdir -p /etc/slurm "$LOG" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/slurm
chown slurm:slurm "$LOG" /var/lib/slurm/slurmctld /run/slurm
# FirstJobId: a fresh controller state counts job ids from it; kept above the ids the accounting
# database already holds (a state lost while the database stayed), or sacct would mix old jobs in.
first_job_id=$(sed -n 's/^FirstJobId=//p' "$CONF" 2>/dev/null || true)
first_job_id=${first_job_id:-1}
conf_changed=0
write_conf() {
    local new_conf
    new_conf=$(cat <<EOF
$MARK (a single-node test cluster; \`bash .ci/slurm.sh --stop\` stops it)
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=3
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
FirstJobId=$first_job_id
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
    if [[ ! -f $CONF ]] || [[ $(cat "$CONF") != "$new_conf" ]]; then
        printf '%s\n' "$new_conf" > "$CONF"
        conf_changed=1
    fi
}
write_conf
cat > "$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm "$DBD_CONF"
chmod 600 "$DBD_CONF"

# 3. munge (authentication between the daemons and the commands).
if ! running munged; then
    [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    say "started munged"
fi
wait_for 20 munge bash -c 'munge -n | unmunge'

# 4. MariaDB and the accounting database (slurmdbd logs in as the unix user slurm: no password).
if ! running mariadbd; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
        >>"$LOG/mariadb.log" 2>&1 < /dev/null &
    say "started mariadbd"
fi
wait_for 60 MariaDB mariadb -e "SELECT 1"
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# 5. slurmdbd, the cluster in it, slurmctld and slurmd.
if ! running slurmdbd; then
    slurmdbd
    say "started slurmdbd"
fi
wait_for 60 slurmdbd sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! running slurmctld && [[ ! -f /var/lib/slurm/slurmctld/job_state ]]; then
    last_id=$(sacct -n -X -a -S 1970-01-01 -o JobIDRaw 2>/dev/null | sed 's/[^0-9].*//' | sort -n | tail -1)
    if [[ -n $last_id ]] && (( last_id >= first_job_id )); then
        first_job_id=$(( last_id + 1 ))
        write_conf
    fi
fi
if running slurmctld && (( conf_changed )); then
    scontrol reconfigure || true
fi
if ! running slurmctld; then
    slurmctld
    say "started slurmctld"
fi
wait_for 60 slurmctld scontrol ping
if ! running slurmd; then
    slurmd -N localhost
    say "started slurmd"
fi
node_idle() { [[ $(sinfo -h -n localhost -o %t) =~ ^(idle|mix|alloc) ]]; }
if ! node_idle; then  # a node down from an earlier session: back into service
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
fi
wait_for 60 "node localhost" node_idle
say "ready: $(sinfo -h -o '%P %D node(s) %c CPUs %t') ($(sinfo -V))"
