# A one-node Slurm on localhost for tests, from Debian's packages (see
# ../shared/TOOLCHAIN.md, section 4). Sourced, not run:
#   source one_node_slurm.sh
#   start_one_node_slurm DIR     # munged, slurmctld, slurmd; exports SLURM_CONF
#   ...sbatch, squeue, scontrol...
#   stop_one_node_slurm          # by process id; safe to call twice and from a trap
#
# Everything lives in DIR: its own munge key and socket (so a munged the
# machine may already run is left alone), slurm.conf, state, spool, logs and
# pid files, and two free TCP ports on the loopback interface. /etc is not
# touched. Needs root: slurmd starts jobs as their owner, and slurmctld,
# slurmd and the jobs run as root here (SlurmUser=root).

slurm_missing_programs() {
  local missing=()
  for program in munged slurmctld slurmd sbatch scontrol scancel squeue sinfo; do
    command -v "$program" > /dev/null || [[ -x /usr/sbin/$program ]] || missing+=("$program")
  done
  echo "${missing[*]}"
}

# Two ports the kernel says are free now.
slurm_free_ports() {
  /usr/bin/python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in sockets])'
}

slurm_started_pids=()

# The pid in FILE once the daemon that forked has written it (not at once).
slurm_record_pid() {
  local file=$1
  for _ in $(seq 1 100); do
    if [[ -s $file ]]; then
      slurm_started_pids+=("$(cat "$file")")
      return 0
    fi
    sleep 0.05
  done
  echo "no pid file $file after 5 s"
  return 1
}

start_one_node_slurm() {
  local dir=$1 cpus
  PATH=$PATH:/usr/sbin
  cpus=$(nproc)
  mkdir -p "$dir"/{munge,state,spool,log,run}
  # munged wants its socket's folder searchable by all, its key private.
  chmod 755 "$dir" "$dir/munge"
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
         --seed-file="$dir/munge/munged.seed" --log-file="$dir/log/munged.log" || return 1
  slurm_record_pid "$dir/munge/munged.pid" || return 1

  local ports
  read -ra ports <<< "$(slurm_free_ports)"
  cat > "$dir/slurm.conf" << EOF
ClusterName=tessera-test
SlurmctldHost=localhost
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/socket
# Debian's Open MPI works with the pmix plugin only (not pmi2 or none).
MpiDefault=pmix
# No cgroups on a CI VM: track processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
# Job ids of their own: the pmix plugin names /tmp/spmix_appdir_<uid>_<job>.<step>
# after them, so two test clusters side by side must not share ids.
FirstJobId=$((1000 + RANDOM * 16 + RANDOM % 16))
# A signalled step gets this long to write its checkpoint before SIGKILL.
KillWait=30
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=localhost NodeHostname=localhost CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  slurm_state_dir=$dir
  # Both daemonize; -i: ignore the (absent) saved state.
  slurmctld -i || return 1
  slurm_record_pid "$dir/run/slurmctld.pid" || return 1
  slurmd -N localhost || return 1
  slurm_record_pid "$dir/run/slurmd.pid" || return 1
  for _ in $(seq 1 150); do
    sinfo -h -o %t 2> /dev/null | grep -qx idle && return 0
    sleep 0.2
  done
  echo "the Slurm node never became idle:"
  sinfo 2>&1
  return 1
}

stop_one_node_slurm() {
  local pid
  # Newest first: slurmd, slurmctld, then munged, which both still talk to.
  for ((i = ${#slurm_started_pids[@]} - 1; i >= 0; --i)); do
    pid=${slurm_started_pids[i]}
    kill "$pid" 2> /dev/null || continue
    # The daemons were re-parented to PID 1 when they forked; wait for each to
    # go (or turn into a zombie for init to reap) before the next.
    for _ in $(seq 1 50); do
      [[ -d /proc/$pid ]] || break
      [[ $(awk '{print $3}' "/proc/$pid/stat" 2> /dev/null) == Z ]] && break
      sleep 0.1
    done
    if [[ -d /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2> /dev/null) != Z ]]; then
      echo "pid $pid did not stop after 5 s: SIGKILL"
      kill -9 "$pid" 2> /dev/null
    fi
  done
  slurm_started_pids=()
}

# Prints each daemon's log (for a failed test).
show_slurm_logs() {
  local log
  for log in "$slurm_state_dir"/log/*.log; do
    echo "---- $log (last 30 lines)"
    tail -n 30 "$log"
  done
}
