#!/usr/bin/env bash
# Nothing a user has committed is lost, and failures are not hidden: real mowe_pretrain processes
# on the tiny config at 2 ranks.
# 1. A start without --resume over committed checkpoints is refused before training, naming the
#    directory, the newest step and both choices, and so is its --dry-run; only an explicit
#    --resume none replaces them.
# 2. --resume auto over a damaged newest checkpoint resumes from the one before, sets the damaged
#    one aside as step-N.damaged, and retention (keep_checkpoints 2) keeps the intact older one;
#    a step directory without a manifest is named in a warning.
# 3. A run whose last steps are all non-finite (fewer than training.max_bad_steps) exits non-zero,
#    says DIVERGED in its summary and writes no checkpoint of the diverged steps.
# 4. Runs whose checkpoint directories sit side by side keep their own metrics (training.run_dir
#    defaults to the checkpoint directory itself).
#   no_loss_e2e.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3
shift 3
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--config "$src/configs/tiny.textproto" --set "data.tokenizer_model=$data/spm.model"
        --set "data.routing_vocab=$data/vocab.pb" --set training.eval_every=0
        --set training.log_every=1 --set training.checkpoint_every=1)
fail() { echo "FAIL: $*"; exit 1; }
run() {  # name, checkpoint dir, args...: 2 ranks, output in $work/<name>.log
  local name=$1 dir=$2
  shift 2
  "${mpiexec[@]}" -np 2 "$bin/mowe_pretrain" "${common[@]}" \
    --set "training.checkpoint_dir=$dir" "$@" > "$work/$name.log" 2>&1
}
expect_in() {  # log name, fixed string
  grep -q -F -- "$2" "$work/$1.log" || { cat "$work/$1.log"; fail "$1: no '$2'"; }
}
complete() { [ -f "$1/manifest.pb" ]; }

# ---- 1. A forgotten --resume refuses instead of replacing the committed checkpoints -------------
a=$work/a
run first "$a" --set training.steps=2 || { cat "$work/first.log"; fail "the first run"; }
if run forgot "$a" --set training.steps=4; then fail "a start without --resume over step 2 ran"; fi
expect_in forgot "training.checkpoint_dir '$a' holds checkpoints up to step 2"
expect_in forgot "--resume auto"
expect_in forgot "--resume none"
grep -q "step 1/" "$work/forgot.log" && fail "the refused run trained"
complete "$a/step-00000002" && complete "$a/step-00000001" ||
  fail "the refused run touched the committed checkpoints"
if run forgot-dry "$a" --dry-run; then fail "the dry run without --resume over step 2 passed"; fi
[ "$(grep "mowe_pretrain: error" "$work/forgot.log")" = \
  "$(grep "mowe_pretrain: error" "$work/forgot-dry.log")" ] ||
  fail "the dry run refuses otherwise than training"
run auto-dry "$a" --resume auto --dry-run || { cat "$work/auto-dry.log"; fail "dry run, --resume auto"; }
# An explicit --resume none starts over: its first checkpoint replaces the later steps.
run none "$a" --set training.steps=1 --resume none || { cat "$work/none.log"; fail "--resume none"; }
complete "$a/step-00000001" || fail "--resume none wrote no step 1"
[ -e "$a/step-00000002" ] && fail "--resume none kept the abandoned step 2"
echo "no --resume over committed checkpoints: refused alike by training and the dry run"

# ---- 2. A damaged newest checkpoint is set aside, never kept in place of an intact one ---------
b=$work/b
run write "$b" --set training.steps=2 --set training.keep_checkpoints=2 ||
  { cat "$work/write.log"; fail "the run writing steps 1 and 2"; }
printf 'DAMAGED!' | dd of="$b/step-00000002/dense.bin" bs=1 conv=notrunc status=none
mkdir "$b/step-00000007"  # a step directory without a manifest (made by hand, or damaged)
# Only the final checkpoint (step 3): retention then chooses between steps 1 and 2.
run damaged "$b" --set training.steps=3 --set training.keep_checkpoints=2 \
  --set training.checkpoint_every=0 --resume auto ||
  { cat "$work/damaged.log"; fail "--resume auto over a damaged step 2"; }
expect_in damaged "cannot resume from $b/step-00000002"
expect_in damaged "resumed from $b/step-00000001 at step 1"
expect_in damaged "set aside $b/step-00000002 as $b/step-00000002.damaged"
expect_in damaged "$b/step-00000007 has no manifest.pb"
complete "$b/step-00000003" || fail "no step 3 after resuming"
complete "$b/step-00000001" || fail "retention removed the intact step 1 and kept the damaged step 2"
[ -e "$b/step-00000002" ] && fail "the damaged step 2 is still in place"
[ -f "$b/step-00000002.damaged/dense.bin" ] || fail "the damaged step 2 was not kept aside"
echo "damaged newest checkpoint: set aside, the intact one before it kept by retention"

# ---- 3. A run that ends diverged fails and keeps its last finite checkpoint the newest ---------
c=$work/c
status=0
MOWE_TRAIN_FAULT=nonfinite-loss:3 run diverged "$c" --set training.steps=5 \
  --set training.checkpoint_every=2 || status=$?
[ "$status" = 1 ] || { cat "$work/diverged.log"; fail "the diverged run exited $status, not 1"; }
expect_in diverged "DIVERGED: the last 3 steps had a non-finite loss"
grep -q "\[train\] done" "$work/diverged.log" && fail "the diverged run says done"
complete "$c/step-00000002" || fail "no checkpoint of the finite step 2"
[ -e "$c/step-00000004" ] || [ -e "$c/step-00000005" ] && fail "a checkpoint of a diverged step was written"
[ "$(cat "$c/latest")" = step-00000002 ] || fail "latest names $(cat "$c/latest"), not step-00000002"
echo "a run ending diverged: exit 1, DIVERGED in the summary, no checkpoint of the diverged steps"

# ---- 4. Runs side by side keep their own metrics -----------------------------------------------
# a, b and c are checkpoint directories in one directory: each run's metrics are its own, and the
# fresh start of c dropped none of b's records.
[ -e "$work/metrics.jsonl" ] && fail "the runs share $work/metrics.jsonl"
steps_of() { grep -o '^{"step":[0-9]*' "$1/metrics.jsonl" | grep -o '[0-9]*$' | sort -nu | tr '\n' ' '; }
[ "$(steps_of "$b")" = "1 2 3 " ] || fail "b's metrics hold steps '$(steps_of "$b")', not 1 2 3"
[ "$(steps_of "$c")" = "1 2 3 4 5 " ] || fail "c's metrics hold steps '$(steps_of "$c")', not 1..5"
echo "runs side by side: each keeps its own metrics.jsonl"
