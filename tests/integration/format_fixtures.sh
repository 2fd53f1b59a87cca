#!/usr/bin/env bash
# Files written by an earlier version still load: the routing vocabulary, tokenizer, 2-rank
# dispatch plan and step-2 checkpoint in tests/fixtures/formats_aa9ace0 (see its README). The
# checkpoint verifies with mowe_convert, and resuming it at 2 ranks (with the plan) and at 1 rank
# (no plan: resharding by reading) continues to exactly the losses and gradient norms that the
# version which wrote it logged at the same world size (the allreduce's order of summation makes
# 1 and 2 ranks differ in the last bits).
#   format_fixtures.sh BIN_DIR SOURCE_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
# The expected values are bits of OpenBLAS's products as well as of the files: they were logged
# with its generic Prescott kernels, which every x86-64 CPU runs; other kernel sets sum in
# another order (runtime/cpu/blas_kernels.h).
export OPENBLAS_CORETYPE=Prescott
bin=$1 src=$2
shift 2
mpiexec=("$@")
fx="$src/tests/fixtures/formats_aa9ace0"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# shellcheck source=../util/run_logs.sh
source "$src/tests/util/run_logs.sh"

"$bin/mowe_convert" verify "$fx/step-00000002" > "$work/verify.log" 2>&1 ||
  { cat "$work/verify.log"; fail "mowe_convert verify refused the fixture checkpoint"; }

resume() {  # name, ranks, extra args...
  local name=$1 n=$2
  shift 2
  mkdir -p "$work/$name/ckpt"
  cp -r "$fx/step-00000002" "$work/$name/ckpt/"
  "${mpiexec[@]}" -np "$n" "$bin/mowe_pretrain" --config "$src/configs/tiny.textproto" \
    --set "data.tokenizer_model=$fx/spm.model" --set "data.routing_vocab=$fx/vocab.pb" \
    --set training.steps=4 --set training.checkpoint_every=2 --set training.log_every=1 \
    --set training.eval_every=0 --set "training.checkpoint_dir=$work/$name/ckpt" \
    --set "training.run_dir=$work/$name" --resume auto "$@" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "$name: resuming the fixture checkpoint failed"; }
  grep -q -E 'resumed from .* at step 2' "$work/$name.log" ||
    { cat "$work/$name.log"; fail "$name: did not resume at step 2"; }
  diff "$fx/expected_steps_3_4.np$n.txt" <(exact_metrics "$work/$name/metrics.jsonl" 3) ||
    fail "$name: steps 3-4 differ from the run that wrote the checkpoint"
  echo "$name: resumed at step 2, steps 3-4 bit-identical to the writing version"
}
resume np2 2 --set "parallel.plan=$fx/plan2.pb"
resume np1 1 --set "parallel.plan="
echo "format fixtures: vocabulary, tokenizer, plan and checkpoint of aa9ace0 load"
