#!/usr/bin/env bash
# Proof that the pipeline runs on SLURM with nothing changed but a profile flag.
#
# As root on Debian 12 (bookworm): installs Debian's SLURM 22.05 (slurm-wlm, slurmdbd), munge and
# MariaDB if missing, starts a private one-node cluster on 127.0.0.1 (all state, logs and the
# database under $STATE_DIR, non-default ports, no cgroups: proctrack/linuxproc), runs the same
# workflow twice from two fresh copies of the repository -- locally and with
# `snakemake --workflow-profile profiles/slurm` -- checks that every non-local job went through
# sbatch and is listed COMPLETED by sacct, compares the outputs of the two runs, and stops every
# daemon it started (trap on EXIT, by PID).
#
# Usage:
#   tests/slurm/run_local_slurm.sh              # the pipeline: Snakefile + config/test.yaml
#   tests/slurm/run_local_slurm.sh --selftest   # the tiny workflow in tests/slurm/selftest/
#   tests/slurm/run_local_slurm.sh --help
#
# Options:
#   --selftest       run tests/slurm/selftest/Snakefile with its config.yaml
#   --skip-install   do not apt-get/pip install anything (fail if something is missing)
#   --skip-local     no local run and no comparison (only the SLURM run and its checks)
#   --keep-state     keep $STATE_DIR (configs, daemon logs, run copies) after a successful run
#
# Environment (defaults in brackets; paths relative to the repository root unless absolute):
#   SNAKEFILE      workflow to run                              [Snakefile]
#   CONFIGFILE     --configfile of both runs ("" for none)     [config/test.yaml]
#   TARGETS        targets of both runs                         [the workflow's default target]
#   SMK_ARGS       extra snakemake arguments for both runs      []
#   LOCAL_ARGS     extra arguments of the local run             [--cores all]
#   CLUSTER_ARGS   extra arguments of the SLURM run (test-only speed-ups; the profile is unchanged)
#                                                   [--slurm-init-seconds-before-status-checks 2]
#   PROFILE        workflow profile of the SLURM run            [profiles/slurm]
#   STATE_DIR      scratch for the cluster and the run copies   [$TMPDIR/qnnff-slurm-test, TMPDIR defaulting to /tmp]
#   LOCAL_DIR, CLUSTER_DIR  where the two copies of the repository run [$STATE_DIR/run-local, run-slurm]
#   LOCAL_RUN_DIR  a finished local run of the same SNAKEFILE, CONFIGFILE and TARGETS (its --directory), made
#                  elsewhere: step 4 makes no local run and the SLURM run is compared with this one
#                  (.ci/run passes the pytest smoke run, QNNFF_KEEP_SMOKE_RUN)  [unset: run locally]
#   COPY_EXCLUDE   regex of repository paths not copied (previous outputs) [^results/]
#   COMPARE_CMD    shell command comparing the runs, run in the repository; it sees $LOCAL_DIR and
#                  $CLUSTER_DIR; exit 0 = same results  [slurm_checks.py compare: every file the
#                  runs made must match byte for byte, except run-time measurements in *.json
#                  keys ($COMPARE_IGNORE_KEYS) and text-report lines ($COMPARE_IGNORE_LINES)]
#   COMPARE_EXCLUDE regex of new files left out of the default comparison
#                  [^(\.snakemake|results/logs|results/benchmarks|logs|benchmarks)/]
#   RUN_TIMEOUT    seconds allowed for each snakemake run       [3600]
#   PLUGIN_SPEC    pip requirement installed if the plugin is missing
#                  [snakemake-executor-plugin-slurm>=2.8,<3]
#   TEST_ACCOUNT, TEST_PARTITION  test account/partition  [qnnff, local]
#   PORT_BASE      slurmctld=PORT_BASE, slurmd=+1, slurmdbd=+2, mariadb=+3      [16817]
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/slurm"

SELFTEST=0 INSTALL=1 RUN_LOCAL=1 KEEP_STATE=0
for arg in "$@"; do
  case "$arg" in
    --selftest) SELFTEST=1 ;;
    --skip-install) INSTALL=0 ;;
    --skip-local) RUN_LOCAL=0 ;;
    --keep-state) KEEP_STATE=1 ;;
    -h|--help) sed -n '2,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [[ $SELFTEST == 1 ]]; then
  SNAKEFILE="${SNAKEFILE:-tests/slurm/selftest/Snakefile}"
  CONFIGFILE="${CONFIGFILE-tests/slurm/selftest/config.yaml}"
else
  SNAKEFILE="${SNAKEFILE:-Snakefile}"
  CONFIGFILE="${CONFIGFILE-config/test.yaml}"
fi
TARGETS="${TARGETS:-}"
SMK_ARGS="${SMK_ARGS:-}"
LOCAL_ARGS="${LOCAL_ARGS:---cores all}"
CLUSTER_ARGS="${CLUSTER_ARGS:---slurm-init-seconds-before-status-checks 2}"
PROFILE="${PROFILE:-profiles/slurm}"
STATE_DIR="${STATE_DIR:-${TMPDIR:-/tmp}/qnnff-slurm-test}"
LOCAL_DIR="${LOCAL_DIR:-$STATE_DIR/run-local}"
LOCAL_RUN_DIR="${LOCAL_RUN_DIR:-}"
CLUSTER_DIR="${CLUSTER_DIR:-$STATE_DIR/run-slurm}"
COPY_EXCLUDE="${COPY_EXCLUDE-^results/}"
COMPARE_CMD="${COMPARE_CMD:-}"
COMPARE_EXCLUDE="${COMPARE_EXCLUDE-^(\.snakemake|results/logs|results/benchmarks|logs|benchmarks)/}"
RUN_TIMEOUT="${RUN_TIMEOUT:-3600}"
PLUGIN_SPEC="${PLUGIN_SPEC:-snakemake-executor-plugin-slurm>=2.8,<3}"
ACCOUNT="${TEST_ACCOUNT:-qnnff}"
PARTITION="${TEST_PARTITION:-local}"
PORT_BASE="${PORT_BASE:-16817}"
CTLD_PORT=$PORT_BASE SLURMD_PORT=$((PORT_BASE + 1)) DBD_PORT=$((PORT_BASE + 2)) DB_PORT=$((PORT_BASE + 3))
CLUSTER=qnnfftest
PY="${PYTHON:-python3}"
SNAKEMAKE="${SNAKEMAKE:-snakemake}"
APT_PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)

ETC="$STATE_DIR/etc" LOGS="$STATE_DIR/log" RUN="$STATE_DIR/run" SPOOL="$STATE_DIR/spool"
MYSQL="$STATE_DIR/mysql" KEYDIR="$STATE_DIR/munge-key"
MUNGE_SOCKDIR=/run/munge   # slurm 22.05's slurmdbd connections ignore AuthInfo=socket=: default socket
RUN_SLURM=/run/slurm       # configless slurmd publishes the config in /run/slurm/conf (see step 2)
CREATED_MUNGE_SOCKDIR=0 CREATED_RUN_SLURM=0 FAILED=1
declare -A T   # phase timings (s)

log() { printf '\n=== [%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
if [[ -n $LOCAL_RUN_DIR ]]; then
  [[ $RUN_LOCAL == 1 ]] || die "LOCAL_RUN_DIR and --skip-local contradict each other"
  [[ -d $LOCAL_RUN_DIR/results ]] || die "LOCAL_RUN_DIR=$LOCAL_RUN_DIR holds no finished run (no results/ in it)"
  LOCAL_DIR="$(cd "$LOCAL_RUN_DIR" && pwd)"
  [[ $LOCAL_DIR/ != "$(mkdir -p "$STATE_DIR" && cd "$STATE_DIR" && pwd)"/* ]] \
    || die "LOCAL_RUN_DIR=$LOCAL_RUN_DIR lies inside STATE_DIR=$STATE_DIR, which this script wipes"
fi
T0=$(now)

# ---------------------------------------------------------------- daemon bookkeeping (by PID)
# name -> expected command name; a PID file in $RUN is only acted on if the process has that name,
# so a stale PID file never ends somebody else's process.
# ("snakemake" is the `timeout` wrapping a snakemake run: SIGTERM to it ends the run too)
declare -A COMM=([snakemake]=timeout [slurmd]=slurmd [slurmctld]=slurmctld [slurmdbd]=slurmdbd [mariadbd]=mariadbd [munged]=munged)
STOP_ORDER=(snakemake slurmd slurmctld slurmdbd mariadbd munged)

pid_of() {  # pid of our daemon $1 if it runs, else empty
  local f="$RUN/$1.pid" pid
  [[ -s $f ]] || return 0
  pid=$(tr -dc 0-9 <"$f")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "${COMM[$1]}" ]] && echo "$pid"
  return 0
}

stop_daemon() {
  local name=$1 pid
  pid=$(pid_of "$name")
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
  if [[ -d /proc/$pid ]]; then
    echo "  $name (pid $pid) did not stop in 30 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "  stopped $name (pid $pid)" >&2
}

alive() { local p; for p in "$@"; do [[ -d /proc/$p ]] && return 0; done; return 1; }

stop_run() {  # the snakemake run under `timeout`: SIGTERM (it cancels its SLURM jobs), then SIGKILL
  local pid kids
  pid=$(pid_of snakemake)
  [[ -n $pid ]] || return 0
  kids=$(pgrep -P "$pid" || true)   # the snakemake process (word-split below on purpose)
  # shellcheck disable=SC2086
  kill -TERM "$pid" $kids 2>/dev/null || true
  # shellcheck disable=SC2086
  for _ in $(seq 1 100); do alive "$pid" $kids || break; sleep 0.3; done
  # shellcheck disable=SC2086
  if alive "$pid" $kids; then
    # shellcheck disable=SC2046,SC2086
    kill -KILL $(for k in $kids; do pgrep -P "$k"; done) $kids "$pid" 2>/dev/null || true
    echo "  killed the snakemake run (pid $pid $kids) after 30 s" >&2
  else
    echo "  stopped the snakemake run (pid $pid)" >&2
  fi
}

stop_all() {
  [[ -d $RUN ]] || return 0
  stop_run
  if [[ -n $(pid_of slurmctld) ]]; then  # jobs left by a failed run: cancel them on our cluster
    SLURM_CONF="$ETC/slurm.conf" scancel --full -u root 2>/dev/null || true
  fi
  local d
  for d in "${STOP_ORDER[@]:1}"; do stop_daemon "$d"; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "stopping the snakemake run and the daemons this script started"
  stop_all
  if [[ $CREATED_MUNGE_SOCKDIR == 1 ]]; then rm -rf "$MUNGE_SOCKDIR"; fi
  if [[ $CREATED_RUN_SLURM == 1 ]]; then rm -rf "$RUN_SLURM"; fi
  if [[ $rc == 0 && $FAILED == 0 && $KEEP_STATE == 0 ]]; then
    rm -rf "$STATE_DIR"
  elif [[ -d $STATE_DIR ]]; then
    echo "state, daemon logs and run copies kept in $STATE_DIR" >&2
    if [[ $rc != 0 && -d $LOGS ]]; then
      local f
      for f in "$LOGS"/{munged,mariadbd,slurmdbd,slurmctld,slurmd}.log; do [[ -f $f ]] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }; done
    fi
  fi
  local d
  for d in "${STOP_ORDER[@]}"; do [[ -z $(pid_of "$d") ]] || echo "WARNING: $d is still running" >&2; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. install
log "1. packages: ${APT_PACKAGES[*]} (Debian), snakemake-executor-plugin-slurm (PyPI)"
t=$(now)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $INSTALL == 1 ]] || die "missing Debian packages: ${missing[*]} (run without --skip-install)"
  # keep the packages' maintainer scripts from starting system services (munge, mariadb, slurm*):
  # this script runs its own private instances and the machine should stay as it was
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { [[ $own_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  [[ $own_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
fi
if ! "$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
  [[ $INSTALL == 1 ]] || die "snakemake-executor-plugin-slurm is not installed (pip install -e .[slurm])"
  "$PY" -m pip install -q "$PLUGIN_SPEC"
fi
command -v "$SNAKEMAKE" >/dev/null || die "$SNAKEMAKE not found"
echo "  slurm $(dpkg-query -W -f='${Version}' slurm-client), munge $(munged --version 2>&1 | awk '{print $1}'), $(mariadbd --version | awk '{print $3}')" >&2
echo "  snakemake $("$SNAKEMAKE" --version), plugin $("$PY" -m pip show snakemake-executor-plugin-slurm 2>/dev/null | awk '/^Version/{print $2}')" >&2
T[install]=$(elapsed "$t")

# ---------------------------------------------------------------- 2. cluster
log "2. one-node SLURM cluster on 127.0.0.1 (state in $STATE_DIR)"
t=$(now)
stop_all   # daemons left by an earlier, killed run of this script (by their PID files)
case "$STATE_DIR" in /|/tmp|/root|/home|"") die "refusing STATE_DIR=$STATE_DIR" ;; esac
rm -rf "$STATE_DIR"
# runtime dirs left behind by such a run (empty, or a link into the state just removed) are ours
if [[ -d $MUNGE_SOCKDIR && -z $(ls -A "$MUNGE_SOCKDIR") ]]; then rmdir "$MUNGE_SOCKDIR"; fi
if [[ -L $RUN_SLURM/conf && ! -e $RUN_SLURM/conf ]]; then rm -f "$RUN_SLURM/conf"; rmdir "$RUN_SLURM" 2>/dev/null || true; fi
mkdir -p "$ETC" "$LOGS" "$RUN" "$SPOOL/ctld" "$SPOOL/d" "$MYSQL"
mkdir -m 700 "$KEYDIR"
unset SLURM_CONF SBATCH_ACCOUNT SBATCH_PARTITION SLURM_JOB_ID SLURM_JOBID SQUEUE_ACCOUNT 2>/dev/null || true
while read -r v; do unset "$v"; done < <(env | awk -F= '/^(SLURM|SBATCH|SRUN|SALLOC|SACCT|SQUEUE)_/{print $1}')
export SLURM_CONF="$ETC/slurm.conf"

# The executor plugin's job step (snakemake-executor-plugin-slurm-jobstep) drops every SLURM_*
# variable but the job's ids before it calls `srun`, SLURM_CONF included; so srun inside a job
# finds the configuration the way it does on a real cluster: /etc/slurm/slurm.conf, else the
# copy a configless slurmd keeps in /run/slurm/conf. We use the latter (nothing written to /etc).
[[ ! -e /etc/slurm/slurm.conf ]] || die "/etc/slurm/slurm.conf exists: this machine has its own SLURM setup; srun inside the test jobs would use it"
if [[ -e $RUN_SLURM ]]; then
  [[ ! -e $RUN_SLURM/conf || -L $RUN_SLURM/conf ]] || die "$RUN_SLURM/conf exists and is not a configless slurmd's link"
else
  CREATED_RUN_SLURM=1
fi

for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (set PORT_BASE)"; fi
done

# munge: reuse a munged already serving the default socket (the system's), else start our own
# with a throw-away key. (slurm 22.05's persistent connections to slurmdbd always use the
# default socket, so a private socket path is not an option.)
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "  using the munged already running on $MUNGE_SOCKDIR" >&2
else
  [[ -d $MUNGE_SOCKDIR ]] || { mkdir -p "$MUNGE_SOCKDIR"; CREATED_MUNGE_SOCKDIR=1; }
  chmod 755 "$MUNGE_SOCKDIR"
  dd if=/dev/urandom of="$KEYDIR/munge.key" bs=1024 count=1 status=none
  chmod 600 "$KEYDIR/munge.key"
  munged --key-file="$KEYDIR/munge.key" --log-file="$LOGS/munged.log" \
    --pid-file="$RUN/munged.pid" --seed-file="$KEYDIR/munged.seed" --num-threads=4
  munge -n </dev/null | unmunge >/dev/null || die "munged does not answer"
fi

# MariaDB for slurmdbd: a private instance (own datadir, socket, TCP port on 127.0.0.1)
mariadb-install-db --no-defaults --datadir="$MYSQL/data" --user=root \
  --auth-root-authentication-method=socket --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 \
  || die "mariadb-install-db failed (see $LOGS/mariadb-install.log)"
mariadbd --no-defaults --datadir="$MYSQL/data" --socket="$MYSQL/mysqld.sock" \
  --pid-file="$RUN/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --user=root \
  --log-error="$LOGS/mariadbd.log" --innodb-buffer-pool-size=256M --innodb-log-file-size=64M \
  --innodb-lock-wait-timeout=900 --skip-name-resolve >/dev/null 2>&1 &
DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
for _ in $(seq 1 150); do
  mariadb --no-defaults -S "$MYSQL/mysqld.sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
  sleep 0.2
done
mariadb --no-defaults -S "$MYSQL/mysqld.sock" -uroot -e "
  CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;" \
  || die "MariaDB did not come up (see $LOGS/mariadbd.log)"

HOST=$(hostname -s)
NODELINE=$(slurmd -C | head -n 1)   # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=.. (the real hardware)
[[ $NODELINE == NodeName=* ]] || die "slurmd -C failed: $NODELINE"

cat >"$ETC/slurmdbd.conf" <<EOF
# written by tests/slurm/run_local_slurm.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf"

cat >"$ETC/slurm.conf" <<EOF
# written by tests/slurm/run_local_slurm.sh: one node, no cgroups (works in containers/VMs)
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmctldParameters=enable_configless
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MpiDefault=none
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageEnforce=associations,limits
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
$NODELINE NodeAddr=127.0.0.1 NodeHostname=$HOST State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

slurmdbd || die "slurmdbd failed to start"
for _ in $(seq 1 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.3; done
sacctmgr -n list cluster >/dev/null 2>&1 || die "slurmdbd does not answer"
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="qnnff SLURM test" Organization=qnnff >/dev/null
sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
slurmctld || die "slurmctld failed to start"
env -u SLURM_CONF slurmd --conf-server "127.0.0.1:$CTLD_PORT" || die "slurmd failed to start"   # configless
state=""
for _ in $(seq 1 120); do
  state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.5
done
[[ $state == idle ]] || die "node $HOST is '$state', not idle, after 60 s"
sinfo >&2
echo "  $NODELINE" >&2
T[cluster]=$(elapsed "$t")

# ---------------------------------------------------------------- 3. two copies of the repository
log "3. copies of the repository: $([[ -n $LOCAL_RUN_DIR ]] && echo "none for the local run (made elsewhere: $LOCAL_DIR)" || echo "$LOCAL_DIR (local run)"), $CLUSTER_DIR (SLURM run)"
prepare_dir() {  # wipe only directories this script made (marker file) or empty ones
  local d=$1
  if [[ -e $d ]]; then
    [[ -e $d/.qnnff-slurm-test || -z $(ls -A "$d") ]] || die "$d exists and was not made by this script"
    rm -rf "$d"
  fi
  mkdir -p "$d" && touch "$d/.qnnff-slurm-test"
}
copy_repo() {  # tracked + untracked-not-ignored files of the work tree, minus COPY_EXCLUDE
  local dest=$1
  if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -co --exclude-standard) \
      | { if [[ -n $COPY_EXCLUDE ]]; then grep -Ev "$COPY_EXCLUDE" || true; else cat; fi; } \
      | while IFS= read -r f; do [[ -f $REPO/$f ]] && printf '%s\n' "$f"; done \
      | tar -C "$REPO" -cf - -T - | tar -C "$dest" -xf -
  else
    tar -C "$REPO" --exclude=.git --exclude=.snakemake --exclude=./results -cf - . | tar -C "$dest" -xf -
  fi
}
t=$(now)
if [[ $RUN_LOCAL == 1 && -z $LOCAL_RUN_DIR ]]; then prepare_dir "$LOCAL_DIR"; copy_repo "$LOCAL_DIR"; fi
prepare_dir "$CLUSTER_DIR"; copy_repo "$CLUSTER_DIR"
BEFORE="$STATE_DIR/files-before.txt"
# the files copied, symlinks included (src/qnnff/schema.yaml): everything else in a run directory was made by the run
(cd "$CLUSTER_DIR" && find . \( -type f -o -type l \) -printf '%P\n' | sort) >"$BEFORE"
echo "  $(wc -l <"$BEFORE") files copied" >&2

# A snakemake run in the background + wait: a signal to this script is handled at once (the trap
# ends the run, whose SLURM jobs are then cancelled), not only after snakemake has finished.
run_child() {  # run_child DIR LOGFILE CMD...: run CMD in DIR with a time limit, output to LOGFILE
  local dir=$1 logfile=$2 rc=0 pid
  shift 2
  (cd "$dir" && exec timeout "$RUN_TIMEOUT" "$@") >"$logfile" 2>&1 &
  pid=$!
  echo "$pid" >"$RUN/snakemake.pid"
  wait "$pid" || rc=$?
  rm -f "$RUN/snakemake.pid"
  return "$rc"
}

CONFIG_ARGS=()
[[ -n $CONFIGFILE ]] && CONFIG_ARGS=(--configfile "$CONFIGFILE")
# shellcheck disable=SC2206   # word splitting of the *_ARGS/TARGETS strings is intended
COMMON=($TARGETS -s "$SNAKEFILE" "${CONFIG_ARGS[@]}" $SMK_ARGS)   # targets first: --configfile takes several values

# ---------------------------------------------------------------- 4. local run
if [[ -n $LOCAL_RUN_DIR ]]; then
  log "4. local run: made elsewhere, $LOCAL_DIR (LOCAL_RUN_DIR)"
  T[local_run]="reused"
elif [[ $RUN_LOCAL == 1 ]]; then
  log "4. local run: (cd $LOCAL_DIR && $SNAKEMAKE $LOCAL_ARGS ${COMMON[*]})"
  t=$(now)
  # shellcheck disable=SC2086
  run_child "$LOCAL_DIR" "$STATE_DIR/local.log" "$SNAKEMAKE" $LOCAL_ARGS "${COMMON[@]}" \
    || { tail -n 40 "$STATE_DIR/local.log" >&2; die "the local run failed (log: $STATE_DIR/local.log)"; }
  T[local_run]=$(elapsed "$t")
  echo "  done in ${T[local_run]} s (log: $STATE_DIR/local.log)" >&2
fi

# ---------------------------------------------------------------- 5. SLURM run
# Exactly what a user runs on a cluster, plus the test cluster's account/partition through the
# profile's environment variables and the test-only CLUSTER_ARGS.
log "5. SLURM run: (cd $CLUSTER_DIR && QNNFF_SLURM_ACCOUNT=$ACCOUNT QNNFF_SLURM_PARTITION=$PARTITION $SNAKEMAKE --workflow-profile $PROFILE ${COMMON[*]} $CLUSTER_ARGS)"
t=$(now)
# shellcheck disable=SC2086
QNNFF_SLURM_ACCOUNT="$ACCOUNT" QNNFF_SLURM_PARTITION="$PARTITION" \
  run_child "$CLUSTER_DIR" "$STATE_DIR/slurm.log" "$SNAKEMAKE" --workflow-profile "$PROFILE" "${COMMON[@]}" $CLUSTER_ARGS \
  || { tail -n 60 "$STATE_DIR/slurm.log" >&2; die "the SLURM run failed (log: $STATE_DIR/slurm.log)"; }
T[slurm_run]=$(elapsed "$t")
echo "  done in ${T[slurm_run]} s (log: $STATE_DIR/slurm.log)" >&2
grep -q "workflow specific profile $PROFILE" "$STATE_DIR/slurm.log" || die "the run did not use the workflow profile $PROFILE"

# ---------------------------------------------------------------- 6. checks
log "6. every non-local job went through SLURM (Snakemake log vs sacct)"
"$PY" "$HERE/slurm_checks.py" jobs "$STATE_DIR/slurm.log" >&2 || die "SLURM job check failed"

if [[ $SELFTEST == 1 ]]; then  # the self-test's jobs log where they ran
  n_expect=$(( $(awk '/^n_chunks:/{print $2}' "$CLUSTER_DIR/$CONFIGFILE") + 2 ))
  n_in_slurm=$(grep -l 'SLURM_JOB_ID=[0-9]' "$CLUSTER_DIR"/results/logs/{sample_points,dft_chunk,assemble_dataset}/*.log | wc -l)
  [[ $n_in_slurm == "$n_expect" ]] || die "only $n_in_slurm of $n_expect self-test jobs logged a SLURM job id"
  grep -q 'SLURM_JOB_ID=none' "$CLUSTER_DIR/results/logs/report/selftest.log" || die "localrule report ran inside SLURM"
  echo "  the $n_in_slurm SLURM jobs logged their SLURM_JOB_ID; the localrule ran outside SLURM" >&2
fi

if [[ $RUN_LOCAL == 1 ]]; then
  log "7. outputs of the local and the SLURM run"
  export LOCAL_DIR CLUSTER_DIR
  if [[ -n $COMPARE_CMD ]]; then
    echo "  COMPARE_CMD: $COMPARE_CMD" >&2
    (cd "$REPO" && bash -c "$COMPARE_CMD") >&2 || die "COMPARE_CMD reports different results"
  else
    "$PY" "$HERE/slurm_checks.py" compare "$LOCAL_DIR" "$CLUSTER_DIR" "$BEFORE" "$COMPARE_EXCLUDE" >&2 \
      || die "the local and the SLURM run differ"
  fi
fi

T[total]=$(elapsed "$T0")
log "timings (s): install ${T[install]}, cluster start ${T[cluster]}, local run ${T[local_run]:-skipped}, SLURM run ${T[slurm_run]}, total ${T[total]}"
echo "OK: $( [[ $SELFTEST == 1 ]] && echo self-test || echo pipeline ) ran on SLURM with --workflow-profile $PROFILE$( [[ $RUN_LOCAL == 1 ]] && echo ' and matches the local run')"
FAILED=0
