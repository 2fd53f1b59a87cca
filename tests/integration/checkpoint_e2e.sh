#!/usr/bin/env bash
# Checkpoints of real mowe_pretrain processes on the tiny config at 2 ranks:
# 1. a SIGKILL of every rank at three points of a checkpoint write (a data file half written;
#    every file written but the directory not renamed; renamed but `latest` not updated) leaves a
#    loadable checkpoint, and --resume auto continues to the same losses as an uninterrupted run
#    (atomicity: the page cache survives a killed process, so durability is not tested);
# 2. SIGUSR1 to mpirun, SIGTERM to launch/mowe_mpirun and SIGTERM to the ranks themselves write a
#    checkpoint at the next step boundary and exit 0; resuming from it matches a straight run
#    (SIGTERM to Open MPI's mpirun itself kills the ranks: docs/checkpoints.md);
# 3. a training.checkpoint_dir that is a file or cannot be created is refused before training,
#    and --dry-run checks the inputs, the plan and the checkpoint directory.
#   checkpoint_e2e.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3
shift 3
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config="$src/configs/tiny.textproto"
common=(--config "$config" --set "data.tokenizer_model=$data/spm.model"
        --set "data.routing_vocab=$data/vocab.pb" --set model.dropout_rate=0.1
        --set training.learning_rate=1e-2 --set training.log_every=1 --set training.eval_every=0
        --set training.keep_checkpoints=3)
fail() { echo "FAIL: $*"; exit 1; }

run() {  # name, args...: 2 ranks, output in $work/<name>.log
  local name=$1
  shift
  "${mpiexec[@]}" -np 2 "$bin/mowe_pretrain" "${common[@]}" "$@" > "$work/$name.log" 2>&1
}
# shellcheck source=../util/run_logs.sh
source "$src/tests/util/run_logs.sh"

# ---- 1. SIGKILL during a checkpoint write ------------------------------------------------------
run straight --set training.steps=12 --set training.checkpoint_every=4 \
  --set "training.checkpoint_dir=$work/straight" || { cat "$work/straight.log"; fail "straight run"; }
# training.eval_every = 0 means no evaluation at all, not even at the end.
grep -q "validation loss" "$work/straight.log" && fail "eval_every 0 still evaluated"
for point in tensor rename latest; do
  dir="$work/kill-$point"
  # The second checkpoint (step 8) is the one killed.
  if MOWE_CHECKPOINT_FAULT="$point:2" run "kill-$point" --set training.steps=12 \
    --set training.checkpoint_every=4 --set "training.checkpoint_dir=$dir"; then
    fail "the run killed at '$point' exited 0"
  fi
  run "resume-$point" --set training.steps=12 --set training.checkpoint_every=4 \
    --set "training.checkpoint_dir=$dir" --resume auto ||
    { cat "$work/resume-$point.log"; fail "resume after a kill at '$point'"; }
  from=$(grep -o -E 'resumed from [^ ]+ at step [0-9]+' "$work/resume-$point.log" | awk '{print $NF}')
  # Killed mid-file: step 8 is incomplete, resume at 4. Killed before the rename: .tmp-step-8 has
  # its manifest (written last), so it is complete and taken. Killed before `latest`: step-8 is
  # in place although `latest` still names step 4.
  want=8
  [ "$point" = tensor ] && want=4
  [ "$from" = "$want" ] || { cat "$work/resume-$point.log"; fail "killed at '$point': resumed at step '$from', not $want"; }
  diff <(losses "$work/straight.log" $((from + 1))) <(losses "$work/resume-$point.log" 0) ||
    fail "killed at '$point': the resumed losses differ from the straight run"
  echo "kill at '$point': resumed from step $from, losses identical to the straight run"
done

# ---- 2. Signals --------------------------------------------------------------------------------
wait_for_step() {  # log, pid: until the log shows step 3, or the process ended
  for _ in $(seq 600); do
    grep -q -E 'step [3-9][0-9]*/' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# Job control: a background job of a script would otherwise start with SIGINT ignored.
set -m
signal_run() {  # name, signal, launcher...: trains 30000 steps (~30 s) and is signalled at step 3
  local name=$1 sig=$2
  shift 2
  "$@" -np 2 "$bin/mowe_pretrain" "${common[@]}" --set training.steps=30000 \
    --set training.checkpoint_every=0 --set "training.checkpoint_dir=$work/$name" \
    > "$work/$name.log" 2>&1 &
  local pid=$!
  wait_for_step "$work/$name.log" "$pid" || { cat "$work/$name.log"; fail "$name did not train"; }
  if [ -n "${signal_ranks:-}" ]; then
    pkill "-$sig" -P "$pid" -x mowe_pretrain  # the ranks (children of mpirun), not mpirun
  else
    kill "-$sig" "$pid"
    # More signals to the ranks, every 5 ms until they end, so some arrive while the checkpoint
    # is being written: they change nothing. (Not to mpirun: one that reaches it after its ranks
    # have ended finds its own handler gone and kills it.)
    if [ -n "${burst:-}" ]; then
      for _ in $(seq 400); do
        pkill "-$sig" -P "$pid" -x mowe_pretrain 2>/dev/null || break
        sleep 0.005
      done
    fi
  fi
  set +e
  wait "$pid"
  status=$?
  set -e
}
check_stopped() {  # name, signal name: sets $stopped to the step it stopped at
  local line
  line=$(grep -o -E "$2 received: stopped at step [0-9]+ after writing [^ ]+" "$work/$1.log") ||
    { tail -20 "$work/$1.log"; fail "$1: no checkpoint-and-stop line"; }
  stopped=${line#*step }
  stopped=${stopped%% *}
  [ -f "${line##* }/manifest.pb" ] || fail "$1: ${line##* } is not a checkpoint"
}

burst=1 signal_run usr1 USR1 "${mpiexec[@]}"
[ "$status" = 0 ] || { cat "$work/usr1.log"; fail "SIGUSR1 to mpirun: exit $status, not 0"; }
check_stopped usr1 SIGUSR1
echo "SIGUSR1 to mpirun: checkpoint at step $stopped, exit 0"
# Resuming from it gives the straight run's losses.
run straight2 --set training.steps=$((stopped + 3)) --set training.checkpoint_every=0 \
  --set "training.checkpoint_dir=$work/straight2" || fail "straight run 2"
run resumed2 --set training.steps=$((stopped + 3)) --set training.checkpoint_every=0 \
  --set "training.checkpoint_dir=$work/usr1" --resume auto || { cat "$work/resumed2.log"; fail "resume after SIGUSR1"; }
diff <(losses "$work/straight2.log" $((stopped + 1))) <(losses "$work/resumed2.log" 0) ||
  fail "the run resumed after SIGUSR1 differs from a straight run"
[ "$(losses "$work/resumed2.log" 0 | wc -l)" = 3 ] || fail "the resumed run did not train 3 steps"

# mowe_mpirun passes the mpiexec flags on; it needs mpirun on the PATH like the user's shell.
signal_run wrapper TERM "$src/launch/mowe_mpirun" "${mpiexec[@]:1}"
[ "$status" = 0 ] || { cat "$work/wrapper.log"; fail "SIGTERM to mowe_mpirun: exit $status, not 0"; }
check_stopped wrapper SIGUSR1
echo "SIGTERM to mowe_mpirun: checkpoint at step $stopped, exit 0"
signal_run wrapper-int INT "$src/launch/mowe_mpirun" "${mpiexec[@]:1}"
[ "$status" = 130 ] || { tail -20 "$work/wrapper-int.log"; fail "SIGINT to mowe_mpirun: exit $status, not 130"; }
check_stopped wrapper-int SIGUSR1
echo "SIGINT to mowe_mpirun: checkpoint at step $stopped, exit 130"

# SIGTERM straight to the ranks (what Slurm does to the tasks of a job step at its time limit).
signal_ranks=1 signal_run term TERM "${mpiexec[@]}"
[ "$status" = 0 ] || { tail -20 "$work/term.log"; fail "SIGTERM to the ranks: exit $status, not 0"; }
check_stopped term SIGTERM
echo "SIGTERM to the ranks: checkpoint at step $stopped, exit 0"

# ---- 3. The checkpoint directory is checked before training ------------------------------------
touch "$work/a-file"
if run notdir --set training.steps=2 --set "training.checkpoint_dir=$work/a-file"; then
  fail "a checkpoint_dir that is a file was accepted"
fi
grep -q "training.checkpoint_dir '$work/a-file'" "$work/notdir.log" ||
  { cat "$work/notdir.log"; fail "the bad checkpoint_dir is not named"; }
grep -q "step 1/" "$work/notdir.log" && fail "training started with an unusable checkpoint_dir"
if run nocreate --set training.steps=2 --set "training.checkpoint_dir=/proc/mowe-checkpoints"; then
  fail "a checkpoint_dir that cannot be created was accepted"
fi
grep -q "training.checkpoint_dir '/proc/mowe-checkpoints'" "$work/nocreate.log" ||
  { cat "$work/nocreate.log"; fail "the uncreatable checkpoint_dir is not named"; }
run dry --set "training.checkpoint_dir=$work/dry" --dry-run || { cat "$work/dry.log"; fail "dry run"; }
grep -q "dry run: inputs, dispatch plan and checkpoint directory are usable" "$work/dry.log" ||
  fail "the dry run did not check the inputs"
if run dry-bad --set "data.routing_vocab=$work/none.pb" --dry-run; then
  fail "a dry run with a missing routing vocabulary passed"
fi
grep -q "$work/none.pb" "$work/dry-bad.log" || { cat "$work/dry-bad.log"; fail "the missing file is not named"; }
echo "1 passed, 0 failed"
