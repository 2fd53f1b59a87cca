#!/usr/bin/env bash
# The frame every MPI program runs in (launch/program/program.h), at 2 ranks, each rank started
# in its own working directory (Open MPI's per-context --wdir), as on nodes with local disks:
# 1. --dry-run refuses what training refuses, with the same message: a relative
#    training.checkpoint_dir (a different directory on each rank), a relative parallel.plan naming
#    a different plan on each rank, a checkpoint_dir that is a file. And with a shared checkpoint
#    directory the same launch passes the dry run.
# 2. mowe_pretrain and mowe_eval refuse ranks that resolved different configs, naming the rank.
#   program_e2e.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3
shift 3
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/node0" "$work/node1"
config="$src/configs/tiny.textproto"
inputs=(--set "data.tokenizer_model=$data/spm.model" --set "data.routing_vocab=$data/vocab.pb")
common=(--config "$config" "${inputs[@]}" --set training.steps=1 --set training.eval_every=0)
fail() { echo "FAIL: $*"; exit 1; }

# name, program, args for rank 0, "--", args for rank 1: output in $work/<name>.log
run_split() {
  local name=$1 program=$2
  shift 2
  local rank0=()
  while [ "$1" != "--" ]; do rank0+=("$1"); shift; done
  shift
  "${mpiexec[@]}" -np 1 --wdir "$work/node0" "$bin/$program" "${rank0[@]}" : \
    -np 1 --wdir "$work/node1" "$bin/$program" "$@" > "$work/$name.log" 2>&1
}
# name, args (the same on both ranks): mowe_pretrain
run() {
  local name=$1
  shift
  run_split "$name" mowe_pretrain "${common[@]}" "$@" -- "${common[@]}" "$@"
}
# The error line, without what differs between two runs (the probe file's name).
error_line() { grep "mowe_pretrain: error" "$1" | sed -E 's/\.probe-[0-9]+-[0-9]+/.probe-N/g'; }

# name, pattern, args: training refuses, naming `pattern`, before its first step; the dry run
# refuses with the same line.
refused_alike() {
  local name=$1 pattern=$2
  shift 2
  if run "$name-train" "$@"; then fail "$name: training was not refused"; fi
  grep -q -- "$pattern" "$work/$name-train.log" ||
    { cat "$work/$name-train.log"; fail "$name: training's refusal does not say '$pattern'"; }
  grep -q "step 1/" "$work/$name-train.log" && fail "$name: training started"
  if run "$name-dry" "$@" --dry-run; then
    cat "$work/$name-dry.log"
    fail "$name: the dry run passed where training refuses"
  fi
  local train dry
  train=$(error_line "$work/$name-train.log")
  dry=$(error_line "$work/$name-dry.log")
  [ -n "$train" ] && [ "$train" = "$dry" ] ||
    fail "$name: the dry run's refusal '$dry' differs from training's '$train'"
  echo "$name: training and the dry run both refuse: $train"
}

# ---- 1. The dry run refuses what training refuses ----------------------------------------------
run control --set "training.checkpoint_dir=$work/shared" --dry-run ||
  { cat "$work/control.log"; fail "the dry run with a shared checkpoint directory"; }
grep -q "dry run: inputs, dispatch plan and checkpoint directory are usable" "$work/control.log" ||
  fail "the control dry run did not check its inputs"
refused_alike node_local_checkpoint_dir \
  "training.checkpoint_dir 'node-local' is not the directory rank 0 sees" \
  --set training.checkpoint_dir=node-local
# Two plans for the same world size and vocabulary, built from two copies of the config: each
# loads, but their bytes differ (the plan records the config it was built from).
cp "$config" "$work/copy.textproto"
"$bin/mowe_plan" --config "$config" "${inputs[@]}" --world-size 2 --out "$work/node0/plan.pb" \
  > "$work/plan0.log" 2>&1 || { cat "$work/plan0.log"; fail "mowe_plan"; }
"$bin/mowe_plan" --config "$work/copy.textproto" "${inputs[@]}" --world-size 2 \
  --out "$work/node1/plan.pb" > "$work/plan1.log" 2>&1 || { cat "$work/plan1.log"; fail "mowe_plan"; }
refused_alike different_plans \
  "the ranks hold different dispatch plans (plan.pb): rank 1 on host .* differs from rank 0" \
  --set "training.checkpoint_dir=$work/shared" --set parallel.plan=plan.pb
touch "$work/a-file"
refused_alike checkpoint_dir_is_a_file "training.checkpoint_dir '$work/a-file' is not a directory" \
  --set "training.checkpoint_dir=$work/a-file"

# ---- 2. Every program refuses ranks with different configs -------------------------------------
mkdir -p "$work/checkpoint" && touch "$work/checkpoint/manifest.pb"
for program in mowe_pretrain mowe_eval; do
  args=(--config "$config" "${inputs[@]}")
  [ "$program" = mowe_eval ] && args+=(--checkpoint "$work/checkpoint")
  if run_split "$program-configs" "$program" "${args[@]}" --set training.seed=1 -- \
    "${args[@]}" --set training.seed=2; then
    fail "$program: ranks with different configs were accepted"
  fi
  grep -q "$program: error: ranks resolved different configs: rank 1 on host .* differs from rank 0 .*give every rank the same --config and --set arguments" \
    "$work/$program-configs.log" || { cat "$work/$program-configs.log"; fail "$program: different configs not named"; }
  echo "$program: refuses ranks with different configs"
done
echo "1 passed, 0 failed"
