#!/usr/bin/env bash
# A real single-node Slurm on this machine, with accounting (slurmdbd + MariaDB) so that `sacct`
# works. Used by the test suite and CI, and handy for trying `lassi-batch submit` on a laptop.
#
#   slurm/local-cluster.sh install   # Debian packages: slurm-wlm, munge, slurmdbd, mariadb-server
#   slurm/local-cluster.sh start     # write the configs, start munged, mariadbd, slurmdbd,
#                                    # slurmctld, slurmd; prints the partition name
#   slurm/local-cluster.sh status    # exit 0 and print the partition when the cluster answers
#   slurm/local-cluster.sh stop      # stop every daemon this script started
#
# Needs root (it writes /etc/slurm and starts system daemons). No systemd is assumed: daemons
# are started directly and stopped through their pid files. Process tracking is by /proc
# (proctrack/linuxproc) and there is no task plugin, so no cgroup delegation is needed.
# MaxArraySize is deliberately small (LASSI_SLURM_MAX_ARRAY, default 4) so that the tests see
# lassi-batch split a study into several job arrays, as it must on real sites.
set -euo pipefail

PARTITION="${LASSI_SLURM_PARTITION:-local}"
CLUSTER="lassi"
MAX_ARRAY="${LASSI_SLURM_MAX_ARRAY:-4}"
CONF=/etc/slurm
RUN=/run/lassi-slurm
LOG=/var/log/slurm
DBPASS="lassi-local-accounting"  # local test database only; reachable through the unix socket
PACKAGES=(slurm-wlm slurm-client slurmdbd munge mariadb-server)

say() { echo "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (writes $CONF, starts daemons)"; }

installed() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v slurmdbd >/dev/null \
    && command -v munged >/dev/null && command -v mariadbd >/dev/null && command -v sbatch >/dev/null
}

do_install() {
  need_root
  if installed; then say "already installed"; return 0; fi
  command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} by hand"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  installed || die "packages installed but daemons not found"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local n=$(( $1 * 5 )) what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "$what did not come up (logs in $LOG)"
}

write_configs() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$CONF" "$RUN" "$LOG" /var/spool/slurmctld /var/spool/slurmd
  cat >"$CONF/slurm.conf" <<EOF
# Written by lassi-batch slurm/local-cluster.sh: one node, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
MaxArraySize=$MAX_ARRAY
MinJobAge=600
KillWait=10
JobRequeue=1
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations,limits,qos
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$CONF/slurmdbd.conf" <<EOF
# Written by lassi-batch slurm/local-cluster.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DBPASS
EOF
  chmod 600 "$CONF/slurmdbd.conf"
}

start_munge() {
  alive "$RUN/munged.pid" && return 0
  [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge; chown munge:munge /run/munge /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for 10 munged munge -n
  cp /run/munge/munged.pid "$RUN/munged.pid"
}

start_mariadb() {
  if ! alive "$RUN/mariadb.pid"; then
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
      --pid-file=/run/mysqld/lassi.pid --skip-networking >"$LOG/mariadb.log" 2>&1 < /dev/null &
    wait_for 30 mariadb mariadb -e "SELECT 1"
    cp /run/mysqld/lassi.pid "$RUN/mariadb.pid"
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurm() {
  if ! alive "$RUN/slurmdbd.pid"; then
    /usr/sbin/slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -i -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  # Associations are enforced (as on real sites): one account, and root in it.
  sacctmgr -i -n list account format=account | grep -qw lassi || sacctmgr -i add account lassi Cluster="$CLUSTER" >/dev/null
  sacctmgr -i -n list user format=user | grep -qw root || sacctmgr -i add user root Account=lassi DefaultAccount=lassi >/dev/null
  if [ "${CONF_CHANGED:-0}" = 1 ]; then  # some settings (enforcement, MaxArraySize) need a restart
    stop_pid slurmd "$RUN/slurmd.pid"
    stop_pid slurmctld "$RUN/slurmctld.pid"
  fi
  if ! alive "$RUN/slurmctld.pid"; then
    /usr/sbin/slurmctld
    wait_for 30 slurmctld scontrol ping
  fi
  if ! alive "$RUN/slurmd.pid"; then
    /usr/sbin/slurmd
  fi
  wait_for 30 "node $(hostname -s)" sh -c "sinfo -h -p '$PARTITION' -o '%t' | grep -Eq '^(idle|mix|alloc)'"
}

do_start() {
  need_root
  installed || die "Slurm is not installed: run '$0 install' first"
  local before
  before=$({ cat "$CONF/slurm.conf" 2>/dev/null || true; } | md5sum)  # no file yet on a fresh machine
  write_configs
  [ "$before" = "$(md5sum < "$CONF/slurm.conf")" ] || CONF_CHANGED=1
  start_munge
  start_mariadb
  start_slurm
  echo "$PARTITION"
}

do_status() {
  installed || { say "not installed"; exit 3; }
  scontrol ping >/dev/null 2>&1 || { say "slurmctld not answering"; exit 3; }
  sinfo -h -p "$PARTITION" -o '%t' | grep -Eq '^(idle|mix|alloc)' || { say "partition $PARTITION has no usable node"; exit 3; }
  sacct -n -X -S now-1minutes >/dev/null 2>&1 || { say "sacct not answering (accounting down)"; exit 3; }
  echo "$PARTITION"
}

stop_pid() {  # stop_pid NAME PIDFILE
  local f=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
  say "stopped $1"
}

do_stop() {
  need_root
  stop_pid slurmd "$RUN/slurmd.pid"
  stop_pid slurmctld "$RUN/slurmctld.pid"
  stop_pid slurmdbd "$RUN/slurmdbd.pid"
  stop_pid mariadb "$RUN/mariadb.pid"
  stop_pid munged "$RUN/munged.pid"
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
