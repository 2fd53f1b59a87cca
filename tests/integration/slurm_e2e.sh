#!/usr/bin/env bash
# launch/slurm/pretrain.sbatch under a real Slurm: a private single-node cluster (munged,
# slurmctld, slurmd from Debian's munge and slurm-wlm packages, everything in a temporary
# directory, nothing in /etc) runs the tiny config at 2 tasks:
# 1. a 40-step job launched with srun --mpi=pmix (MOWE_LAUNCHER=srun) writes the dispatch plan,
#    trains, checkpoints and ends COMPLETED without a requeue;
# 2. the same RUN_DIR with more steps, launched with launch/mowe_mpirun: resumes at step 40, gets
#    SIGUSR1 from Slurm (scancel --batch, what --signal=B:USR1@N sends before the time limit),
#    writes a checkpoint, requeues itself, resumes from that checkpoint and finishes;
# 3. the losses of every step of both jobs (1..40, 41..stop, stop+1..end) are those of one
#    uninterrupted mpirun run.
# Exits 77 (skipped) only without root or the packages; daemons that do not come up with them
# installed are a failure (a broken Slurm setup), with the tail of each daemon's log.
#   slurm_e2e.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3
shift 3
mpiexec=("$@")
skip() {
  echo "SKIP: $*"
  exit 77
}

[ "$(id -u)" -eq 0 ] || skip "needs root: slurmd runs as root to start the jobs' processes"
for tool in munged mungekey munge unmunge slurmctld slurmd sbatch scontrol scancel sinfo srun \
    mpirun; do
  command -v "$tool" > /dev/null ||
    skip "$tool is missing (Debian packages slurm-wlm and munge, installed by launch/setup.sh)"
done
compgen -G '/usr/lib/*/slurm-wlm/mpi_pmix.so' > /dev/null ||
  skip "Slurm's PMIx plugin (mpi_pmix.so, package slurm-wlm-basic-plugins) is missing"

# Nothing of a surrounding Slurm job or of the caller's settings may leak into this cluster.
# shellcheck disable=SC2046
unset $(compgen -v SLURM_) MOWE_ROOT MOWE_LAUNCHER MOWE_MPIRUN_FLAGS MOWE_SRUN_FLAGS \
  MOWE_RANKS_PER_NODE 2> /dev/null || true

work=$(mktemp -d /tmp/mowe-slurm.XXXXXX)
# munged refuses a socket in a directory not everyone can traverse.
chmod 755 "$work"
mkdir -m 700 "$work/munge"
mkdir -m 755 "$work/run"
mkdir "$work/state" "$work/spool" "$work/log"
pids=()
cleanup() {
  set +e
  if [ -n "${SLURM_CONF:-}" ] && [ -n "${ctld_pid:-}" ] && kill -0 "$ctld_pid" 2> /dev/null; then
    # Jobs outlive slurmd (slurmstepd runs on its own): end them first.
    scancel --user=root 2> /dev/null
    for _ in $(seq 50); do
      [ -z "$(squeue -h -o %i 2> /dev/null)" ] && break
      sleep 0.2
    done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
  done
  # A job step's slurmstepd may still be finishing; this cluster's carry its SLURM_CONF.
  local stepd
  for stepd in $(pgrep -x slurmstepd); do
    grep -qz "^SLURM_CONF=$work/slurm.conf\$" "/proc/$stepd/environ" 2> /dev/null || continue
    for _ in $(seq 50); do
      kill -0 "$stepd" 2> /dev/null || break
      sleep 0.1
    done
    kill -KILL "$stepd" 2> /dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

show_logs() {  # the tail of every daemon's log and its stdout/stderr
  local f
  for f in "$work"/log/*.log "$work"/log/*.out; do
    [ -f "$f" ] || continue
    echo "---- $f (last 15 lines)"
    tail -15 "$f"
  done
}
fail() {
  echo "FAIL: $*"
  show_logs
  exit 1
}

# ---- munged with a fresh key -------------------------------------------------------------------
socket=$work/run/munge.socket
mungekey --create --keyfile="$work/munge/munge.key" > /dev/null ||
  fail "mungekey cannot create a key"
munged --foreground --socket="$socket" --key-file="$work/munge/munge.key" \
  --pid-file="$work/run/munged.pid" --log-file="$work/log/munged.log" \
  --seed-file="$work/munge/munged.seed" > "$work/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  munge --socket="$socket" --no-input 2> /dev/null | unmunge --socket="$socket" > /dev/null 2>&1 &&
    break
  sleep 0.1
done
munge --socket="$socket" --no-input 2> /dev/null | unmunge --socket="$socket" > /dev/null 2>&1 ||
  fail "munged did not start"

# ---- slurm.conf --------------------------------------------------------------------------------
free_port() {  # a TCP port nobody listens on, at or above $1
  local used port
  used=$(cat /proc/net/tcp /proc/net/tcp6 2> /dev/null | awk 'NR > 1 { print $2 }' |
    sed -n 's/.*:\([0-9A-F]*\)$/\1/p' | while read -r hex; do echo $((16#$hex)); done)
  for ((port = $1; port < 65000; port++)); do
    grep -qx "$port" <<< "$used" || { echo "$port"; return; }
  done
  return 1
}
base=$((20000 + RANDOM % 40000))
ctld_port=$(free_port "$base")
slurmd_port=$(free_port $((ctld_port + 1)))
host=$(hostname -s)
# The node as slurmd sees this machine (CPUs, sockets, cores, memory), under this name.
node=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //') || fail "slurmd -C failed"
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" << EOF
ClusterName=mowetest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$socket,cred_expire=5
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# The requeued job starts within 2 s of being eligible, not at the next 60 s scheduling pass.
SchedulerParameters=sched_interval=2
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
# A busy machine can take seconds to answer; the default 10 s would fail commands spuriously.
MessageTimeout=60
# Seconds between SIGTERM and SIGKILL when a job is cancelled (the cleanup's).
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -D > "$work/log/slurmctld.out" 2>&1 &
ctld_pid=$!
pids+=("$ctld_pid")
slurmd -D -N "$host" > "$work/log/slurmd.out" 2>&1 &
pids+=($!)
state=""
end=$((SECONDS + 30))
while [ "$SECONDS" -lt "$end" ]; do
  state=$(sinfo -h -n "$host" -o %T 2> /dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
[ "$state" = idle ] || fail "slurmctld and slurmd did not bring the node up (state '$state')"
echo "slurm: node $host up ($node), slurmctld port $ctld_port, slurmd port $slurmd_port ($SECONDS s)"

# ---- helpers -----------------------------------------------------------------------------------
config=$src/configs/tiny.textproto
run=$work/runs/tiny
common=(--set "data.tokenizer_model=$data/spm.model" --set "data.routing_vocab=$data/vocab.pb"
        --set model.dropout_rate=0.1 --set training.learning_rate=1e-2
        --set training.global_batch_size=16 --set training.log_every=1
        --set training.eval_every=0)
# One CPU: let Slurm put both tasks on it.
overcommit=()
[ "$(nproc)" -ge 2 ] || overcommit=(--overcommit)

submit() {  # output file, env assignments..., -- sbatch script args...: prints the job id
  local out=$1
  shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" sbatch --parsable -N 1 -n 2 "${overcommit[@]}" -o "$out" \
    "$src/launch/slurm/pretrain.sbatch" "$@"
}
job_field() {  # job id, field: its value in scontrol show job
  scontrol show job "$1" 2> /dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
wait_done() {  # job id, seconds: until the job is COMPLETED (or ended otherwise)
  local state="" end=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$end" ]; do
    state=$(job_field "$1" JobState)
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) break ;;
    esac
    sleep 0.2
  done
  echo "$state"
}
losses() {  # the step lines of the logs, "k loss X lr Y grad_norm Z", without the step count
  cat "$@" | grep -o -E 'step [0-9]+/[0-9]+ loss [0-9.]+ lr [0-9.e-]+ grad_norm [0-9.]+' |
    sed -E 's|^step ([0-9]+)/[0-9]+|\1|'
}
expect_line() {  # log, extended regex, what it means
  grep -q -E "$2" "$1" || { echo "---- $1 (last 30 lines)"; tail -30 "$1"; fail "$3: no line matching '$2'"; }
}

# ---- 1. a job that finishes, started with srun ------------------------------------------------
out1=$work/job1.out
job1=$(submit "$out1" MOWE_BIN="$bin" MOWE_LAUNCHER=srun -- "$config" "$run" "${common[@]}" \
  --set training.steps=40 --set training.checkpoint_every=10) || fail "sbatch refused the job"
state=$(wait_done "$job1" 300)
[ "$state" = COMPLETED ] || { cat "$out1"; fail "job $job1 (40 steps, srun) ended $state, not COMPLETED"; }
[ "$(job_field "$job1" Restarts)" = 0 ] || fail "job $job1 was requeued although it finished"
[ "$(job_field "$job1" ExitCode)" = 0:0 ] || fail "job $job1 exit code $(job_field "$job1" ExitCode)"
expect_line "$out1" "writing the dispatch plan for 2 ranks: $run/plan-2.pb" "job 1 plan"
expect_line "$out1" "2 ranks on 1 node\\(s\\) \\($host\\), parallel.ranks_per_node 2," "job 1 layout"
expect_line "$out1" "srun --mpi=pmix -n 2 $bin/mowe_pretrain" "job 1 launcher"
expect_line "$out1" "step 40/40 loss" "job 1 training"
expect_line "$out1" "finished: checkpoint at step 40 of 40" "job 1 end"
grep -q "requeueing" "$out1" && fail "job 1 requeued itself"
[ -f "$run/checkpoints/step-00000040/manifest.pb" ] || fail "no checkpoint at step 40 in $run/checkpoints"
[ -f "$run/plan-2.pb" ] || fail "no plan $run/plan-2.pb"
echo "job $job1 (srun): trained 40 steps, checkpointed, COMPLETED without a requeue ($SECONDS s)"

# ---- 2. preempted, requeued, resumed, finished -------------------------------------------------
# How far the first attempt gets before Slurm's signal reaches it depends on the machine's load
# (seconds, on a busy 2-core machine). So the first attempt is given steps it never reaches, and
# the step count the run finishes at is written into the config (re-read by every attempt) once
# the stop step is known: the partition is set DOWN before the signal, which keeps the requeued
# job pending until the config is rewritten. Changing training.steps between attempts is
# allowed (docs/checkpoints.md); the tiny config's learning rate does not depend on it.
config2=$work/tiny-preempt.textproto
set_steps() {  # the config of job 2 with training.steps = $1
  sed -E "s/^  steps: [0-9]+\$/  steps: $1/" "$config" > "$config2.tmp"
  grep -q "^  steps: $1\$" "$config2.tmp" || fail "cannot set training.steps in a copy of $config"
  mv "$config2.tmp" "$config2"
}
set_steps 1000000
out2=$work/job2.out
job2=$(submit "$out2" MOWE_BIN="$bin" -- "$config2" "$run" "${common[@]}" \
  --set training.checkpoint_every=0) || fail "sbatch refused job 2"
started=""
end=$((SECONDS + 180))
while [ "$SECONDS" -lt "$end" ]; do  # until it trains past the step it resumed at
  if tail -c 4000 "$out2" 2> /dev/null | grep -q -E "step (4[5-9]|[5-9][0-9]|[0-9]{3,})/1000000 loss"; then
    started=1
    break
  fi
  case "$(job_field "$job2" JobState)" in PENDING | RUNNING) ;; *) break ;; esac
  sleep 0.1
done
[ -n "$started" ] || { cat "$out2"; fail "job $job2 did not start training"; }
scontrol update PartitionName=test State=DOWN || fail "cannot set the partition DOWN"
scancel --batch --signal=USR1 "$job2" || fail "scancel --batch --signal=USR1 $job2"
echo "job $job2 (mowe_mpirun): training, signalled with scancel --batch --signal=USR1 ($SECONDS s)"
requeued=""
end=$((SECONDS + 120))
while [ "$SECONDS" -lt "$end" ]; do  # until the first attempt has stopped and requeued the job
  requeued=$(grep -o -E "stopped at step [0-9]+ of 1000000: requeueing job $job2" "$out2") && break
  case "$(job_field "$job2" JobState)" in PENDING | RUNNING | REQUEUED | COMPLETING) ;; *) break ;; esac
  sleep 0.2
done
[ -n "$requeued" ] || { tail -40 "$out2"; fail "job $job2 did not stop and requeue itself"; }
stopped=${requeued#stopped at step }
stopped=${stopped%% *}
steps=$((stopped + 200))
set_steps $steps
scontrol update PartitionName=test State=UP || fail "cannot set the partition UP"
state=$(wait_done "$job2" 300)
[ "$state" = COMPLETED ] || { tail -40 "$out2"; fail "job $job2 ended $state, not COMPLETED"; }

line=$(grep -o -E "SIGUSR1 received: stopped at step [0-9]+ after writing [^ ]+" "$out2") ||
  { tail -40 "$out2"; fail "job $job2: no checkpoint-and-stop line"; }
[ "$line" = "SIGUSR1 received: stopped at step $stopped after writing $run/checkpoints/step-$(printf %08d "$stopped")" ] ||
  fail "job $job2: '$line', not a checkpoint at step $stopped"
expect_line "$out2" "resumed from $run/checkpoints/step-0*40 at step 40 " "job 2 attempt 1 resume"
expect_line "$out2" "job $job2 attempt 2: .*newest checkpoint step $stopped of $steps" "job 2 attempt 2"
expect_line "$out2" "resumed from $run/checkpoints/step-0*$stopped at step $stopped " "job 2 attempt 2 resume"
expect_line "$out2" "step $steps/$steps loss" "job 2 attempt 2 training"
expect_line "$out2" "finished: checkpoint at step $steps of $steps" "job 2 end"
[ "$(grep -c "requeueing" "$out2")" = 1 ] || fail "job $job2 requeued itself more than once"
grep -q "writing the dispatch plan" "$out2" && fail "job 2 rebuilt the existing plan"
[ "$(job_field "$job2" Restarts)" = 1 ] || fail "job $job2 restarted $(job_field "$job2" Restarts) times, not once"
[ "$(job_field "$job2" ExitCode)" = 0:0 ] || fail "job $job2 exit code $(job_field "$job2" ExitCode)"
echo "job $job2: checkpoint at step $stopped, requeued, resumed from it, COMPLETED at step $steps ($SECONDS s)"

# ---- 3. the same losses as one uninterrupted run ----------------------------------------------
"${mpiexec[@]}" -np 2 "$bin/mowe_pretrain" --config "$config" "${common[@]}" \
  --set "parallel.plan=$run/plan-2.pb" --set training.steps=$steps \
  --set training.checkpoint_every=0 --set "training.checkpoint_dir=$work/straight" \
  > "$work/straight.out" 2>&1 || { tail -20 "$work/straight.out"; fail "the uninterrupted run"; }
[ "$(losses "$work/straight.out" | wc -l)" = "$steps" ] || fail "the uninterrupted run logged $(losses "$work/straight.out" | wc -l) steps, not $steps"
# Every step exactly once across the two jobs' three attempts, each with the straight run's loss,
# learning rate and gradient norm.
if ! diff <(losses "$work/straight.out") <(losses "$out1" "$out2") > "$work/diff" 2>&1; then
  head -20 "$work/diff"
  fail "the Slurm jobs' losses differ from the uninterrupted run's"
fi
echo "steps 1..$steps of the two jobs (stopped at 40 and $stopped) match an uninterrupted run ($SECONDS s)"
echo "1 passed, 0 failed"
