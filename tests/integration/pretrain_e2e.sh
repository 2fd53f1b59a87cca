#!/usr/bin/env bash
# End to end on the tiny config: mowe_vocab builds a tokenizer and routing vocabulary from
# WordNet, mowe_pretrain trains 4 steps at 1, 2 and 4 ranks (4: hierarchical all-to-all as 2
# nodes of 2) with dropout (residual branches, attention probabilities, the experts' hidden
# layer) and tiny gradient buckets (so bucketed allreduces overlap backward), and must log the
# same training and validation losses and gradient norms (the same global batch gives the same
# model whatever the world size), with the loss falling; a plan built for 2 ranks is refused by
# a 4-rank job with both world sizes in the message.
#   pretrain_e2e.sh BIN_DIR SOURCE_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2
shift 2
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config="$src/configs/tiny.textproto"
files=(--set "data.tokenizer_model=$work/spm.model" --set "data.routing_vocab=$work/vocab.pb")

"$bin/mowe_vocab" --config "$config" "${files[@]}" > "$work/vocab.log" 2>&1 ||
  { cat "$work/vocab.log"; exit 1; }

train() {  # ranks, extra args...
  local n=$1
  shift
  "${mpiexec[@]}" -np "$n" "$bin/mowe_pretrain" --config "$config" "${files[@]}" \
    --set training.steps=4 --set training.log_every=1 --set training.eval_every=2 \
    --set model.dropout_rate=0.1 --set model.mowe.expert_dropout_rate=0.1 \
    --set parallel.grad_bucket_mb=0.002 \
    --set training.learning_rate=1e-2 --set "training.checkpoint_dir=$work/ckpt-$n-$RANDOM" \
    "$@" 2>&1
}
losses() {
  grep -o -E 'step [0-9]+/4 loss [0-9.]+ lr [0-9.e-]+ grad_norm [0-9.]+|step [0-9]+ validation loss [0-9.]+' ||
    true
}

train 1 --set "parallel.plan=" > "$work/np1.log" || { cat "$work/np1.log"; exit 1; }
losses < "$work/np1.log" > "$work/np1.txt"
if [ "$(wc -l < "$work/np1.txt")" -ne 6 ]; then
  echo "FAIL: 1 rank did not log 4 steps and 2 evaluations"; cat "$work/np1.log"; exit 1
fi
# Training batches differ from step to step; the validation batches do not.
first=$(grep -o -E 'validation loss [0-9.]+' "$work/np1.txt" | head -1 | awk '{print $3}')
last=$(grep -o -E 'validation loss [0-9.]+' "$work/np1.txt" | tail -1 | awk '{print $3}')
if ! awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'; then
  echo "FAIL: the validation loss did not fall from step 2 to step 4 ($first -> $last)"; exit 1
fi
"$bin/mowe_plan" --config "$config" "${files[@]}" --world-size 2 --out "$work/plan2.pb" \
  > "$work/plan.log" 2>&1 || { cat "$work/plan.log"; exit 1; }
for n in 2 4; do
  plan=""
  [ "$n" = 2 ] && plan="$work/plan2.pb"  # the written plan file at 2, built in memory at 4
  layout=()
  [ "$n" = 4 ] && layout=(--set parallel.alltoall=HIERARCHICAL --set parallel.ranks_per_node=2)
  train "$n" --set "parallel.plan=$plan" "${layout[@]}" > "$work/np$n.log" ||
    { cat "$work/np$n.log"; exit 1; }
  losses < "$work/np$n.log" > "$work/np$n.txt"
  if ! diff "$work/np1.txt" "$work/np$n.txt"; then
    echo "FAIL: $n ranks logged other losses than 1 rank"; exit 1
  fi
done
cat "$work/np1.txt"

if train 4 --set "parallel.plan=$work/plan2.pb" > "$work/wrong.log"; then
  echo "FAIL: a plan for 2 ranks was accepted by a 4-rank job"; exit 1
fi
if ! grep -q "built for 2 ranks, this job has 4" "$work/wrong.log"; then
  echo "FAIL: the refusal does not name both world sizes:"; cat "$work/wrong.log"; exit 1
fi
# A plan path that is set but missing is an error naming it, never a silent in-memory plan.
if train 1 --set "parallel.plan=$work/missing.pb" > "$work/missing.log"; then
  echo "FAIL: a missing plan file was accepted"; exit 1
fi
if ! grep -q "parallel.plan '$work/missing.pb' does not exist" "$work/missing.log"; then
  echo "FAIL: the missing plan is not named:"; cat "$work/missing.log"; exit 1
fi
echo "1 passed, 0 failed"
