#!/usr/bin/env bash
# mowe_pretrain on the simulated device against the same run on the CPU: real processes at 2
# ranks, the tiny MoWE config (dropout on), 12 steps with a checkpoint at step 12.
# - every logged training loss and gradient norm is the same;
# - the checkpoint's tensor files (dense.bin, experts.bin, rank-*.pb) are byte-identical;
# - the device run resumes from the CPU run's checkpoint and logs the CPU's next losses.
#   device_e2e.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3
shift 3
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() {  # name, device, steps, extra args...: 2 ranks, output in $work/<name>.log
  local name=$1 device=$2 steps=$3
  shift 3
  "${mpiexec[@]}" -np 2 "$bin/mowe_pretrain" --config "$src/configs/tiny.textproto" \
    --set "data.tokenizer_model=$data/spm.model" --set "data.routing_vocab=$data/vocab.pb" \
    --set parallel.device="$device" --set model.dropout_rate=0.1 --set training.eval_every=0 \
    --set training.log_every=1 --set training.checkpoint_every=12 --set training.steps="$steps" \
    --set "training.checkpoint_dir=$work/$name" "$@" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "$name"; }
}
losses() {  # the step lines' loss and grad_norm fields
  grep -o 'step [0-9]*/[0-9]* loss [0-9.naif-]* lr [0-9.e-]* grad_norm [0-9.naif-]*' "$work/$1.log"
}

run cpu CPU 12 --resume none
run sim SIMULATED 12 --resume none
grep -q 'device: sim (parallel.device: SIMULATED' "$work/sim.log" || fail "the device run did not say its device"
[ "$(losses cpu | wc -l)" -eq 12 ] || { losses cpu; fail "expected 12 step lines"; }
diff <(losses cpu) <(losses sim) || fail "losses differ between the CPU and the simulated device"
for f in "$work/cpu/step-00000012/"*; do
  name=$(basename "$f")
  [ "$name" = manifest.pb ] && continue  # holds the config, device included
  cmp -s "$f" "$work/sim/step-00000012/$name" || fail "$name differs"
done

# The CPU's checkpoint, resumed on the device, continues as the CPU does.
run cpu_more CPU 16 --resume "$work/cpu/step-00000012"
run sim_more SIMULATED 16 --resume "$work/cpu/step-00000012"
[ "$(losses sim_more | wc -l)" -eq 4 ] || { losses sim_more; fail "expected 4 resumed steps"; }
diff <(losses cpu_more) <(losses sim_more) || fail "resumed losses differ"
echo "PASS: 12 steps and 4 resumed ones with the CPU's losses; checkpoint tensors byte-identical"
