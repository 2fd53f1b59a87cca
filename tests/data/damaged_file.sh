#!/usr/bin/env bash
# Damages one copy of an input file as a disk or a cut-off transfer would, then runs the program
# that reads it; ctest checks its exit status and one-line message (tests/util/expect_exit.sh).
#   damaged_file.sh CASE BIN_DIR SOURCE_DIR DATA_DIR WORK_DIR
# DATA_DIR holds the tiny config's spm.model and vocab.pb (the tiny_data fixture).
set -uo pipefail
case=$1 bin=$2 src=$3 data=$4 work=$5
rm -rf "$work"
mkdir -p "$work"
cp "$data/spm.model" "$data/vocab.pb" "$work/"
files=(--config "$src/configs/tiny.textproto" --set "data.tokenizer_model=$work/spm.model"
       --set "data.routing_vocab=$work/vocab.pb" --set "training.checkpoint_dir=$work/ckpt")

flip_bit() {  # FILE OFFSET: flips the lowest bit of one byte in place
  local byte
  byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
half() { echo $(($(stat -c %s "$1") / 2)); }

case $case in
  vocab_flipped_bit)
    flip_bit "$work/vocab.pb" "$(half "$work/vocab.pb")"
    exec "$bin/mowe_plan" "${files[@]}" --world-size 2 --out "$work/plan.pb" ;;
  vocab_truncated)
    truncate -s "$(half "$work/vocab.pb")" "$work/vocab.pb"
    exec "$bin/mowe_plan" "${files[@]}" --world-size 2 --out "$work/plan.pb" ;;
  vocab_old_format)
    # Format 1: a bare protobuf starting with format_version = 1.
    printf '\x08\x01\x11\x00\x00\x00\x00\x00\x00\x00\x00' > "$work/vocab.pb"
    exec "$bin/mowe_plan" "${files[@]}" --world-size 2 --out "$work/plan.pb" ;;
  plan_flipped_bit)
    "$bin/mowe_plan" "${files[@]}" --world-size 1 --out "$work/plan.pb" > /dev/null || exit 1
    flip_bit "$work/plan.pb" "$(half "$work/plan.pb")"
    exec "$bin/mowe_pretrain" "${files[@]}" --set "parallel.plan=$work/plan.pb" --dry-run ;;
  plan_truncated)
    "$bin/mowe_plan" "${files[@]}" --world-size 2 --out "$work/plan.pb" > /dev/null || exit 1
    truncate -s "$(half "$work/plan.pb")" "$work/plan.pb"
    exec "$bin/mowe_plan" "${files[@]}" --check --world-size 2 --out "$work/plan.pb" ;;
  tokenizer_garbage)
    head -c 1000 "$work/vocab.pb" > "$work/spm.model"
    exec "$bin/mowe_pretrain" "${files[@]}" --dry-run ;;
  *)
    echo "unknown case $case"; exit 1 ;;
esac
