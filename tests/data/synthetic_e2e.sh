#!/usr/bin/env bash
# The SYNTHETIC corpus end to end on the tiny config, with no WordNet and no SentencePiece run:
# mowe_vocab writes the routing vocabulary, mowe_plan the plans for 1 and 2 ranks, mowe_pretrain
# trains 6 steps with finite losses; 2 ranks give the logged losses of 1 rank; a run stopped at
# step 3 and resumed from its checkpoint reproduces the uninterrupted run's losses and gradient
# norms exactly (full precision, from metrics.jsonl).
#   synthetic_e2e.sh BIN_DIR SOURCE_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2
shift 2
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
common=(--config "$src/configs/tiny.textproto" --set data.corpus=SYNTHETIC
        --set "data.routing_vocab=$work/vocab.pb" --set training.log_every=1
        --set training.eval_every=3 --set training.checkpoint_every=3)

"$bin/mowe_vocab" "${common[@]}" > "$work/vocab.log" 2>&1 || { cat "$work/vocab.log"; fail "mowe_vocab"; }
grep -q "SYNTHETIC: for benchmarks" "$work/vocab.log" || { cat "$work/vocab.log"; fail "no synthetic report"; }
for np in 1 2; do
  "$bin/mowe_plan" "${common[@]}" --world-size $np --out "$work/plan$np.pb" > "$work/plan$np.log" 2>&1 ||
    { cat "$work/plan$np.log"; fail "mowe_plan --world-size $np"; }
done

train() {  # name, ranks, args...
  local name=$1 np=$2
  shift 2
  "${mpiexec[@]}" -np "$np" "$bin/mowe_pretrain" "${common[@]}" --set "parallel.plan=$work/plan$np.pb" \
    --set "training.checkpoint_dir=$work/$name/checkpoints" "$@" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "training run $name"; }
}
# shellcheck source=../util/run_logs.sh
source "$src/tests/util/run_logs.sh"
exact() { exact_metrics "$work/$1/checkpoints/metrics.jsonl" "$2"; }  # a run's scalars from step $2 on

train straight 1 --set training.steps=6
[ "$(losses "$work/straight.log" 1 | wc -l)" = 6 ] || { cat "$work/straight.log"; fail "not 6 step lines"; }
losses "$work/straight.log" 1 | awk '{ if ($4 !~ /^[0-9]+\.[0-9]+$/) exit 1 }' ||
  fail "a loss is not finite: $(losses "$work/straight.log" 1)"
grep -q "validation loss" "$work/straight.log" || fail "no evaluation on the synthetic validation split"

train two_ranks 2 --set training.steps=6
# The losses as logged (4 decimals): the loss and norm reductions add in another order at 2 ranks.
diff <(losses "$work/straight.log" 1) <(losses "$work/two_ranks.log" 1) || fail "2 ranks differ from 1"

train stopped 1 --set training.steps=3
mkdir -p "$work/resumed" && cp -r "$work/stopped/checkpoints" "$work/resumed/"
train resumed 1 --set training.steps=6 --resume auto
grep -q -E "resumed from .* at step 3" "$work/resumed.log" || { cat "$work/resumed.log"; fail "did not resume at step 3"; }
[ "$(exact resumed 4 | wc -l)" = 3 ] || fail "the resumed run's metrics lack steps 4..6"
diff <(exact straight 4) <(exact resumed 4) ||
  fail "the resumed losses differ from the uninterrupted run"
echo "SYNTHETIC: 6 finite losses, identical at 2 ranks and after resuming from step 3:"
exact straight 1
