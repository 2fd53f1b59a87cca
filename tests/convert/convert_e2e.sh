#!/usr/bin/env bash
# mowe_convert on checkpoints of a real training (tiny config, 2 ranks, dropout on):
# 1. export to one safetensors file and to shards, import each back: every data file, rank file
#    and the manifest are byte-identical to the original, and verify passes;
# 2. mowe_pretrain --resume <imported> gives the losses of the uninterrupted run and writes the
#    same final checkpoint;
# 3. verify finds a flipped byte in dense.bin and in experts.bin, naming the file and tensor;
# 4. command-line errors are one line naming the problem.
# Leaves OUT_DIR/export/model.safetensors and OUT_DIR/train/step-00000003 for the Python reader
# test (check_export.py).
#   convert_e2e.sh BIN_DIR SOURCE_DIR DATA_DIR OUT_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3 out=$4
shift 4
mpiexec=("$@")
rm -rf "$out"
mkdir -p "$out"
convert="$bin/mowe_convert"
common=(--config "$src/configs/tiny.textproto" --set "data.tokenizer_model=$data/spm.model"
        --set "data.routing_vocab=$data/vocab.pb" --set model.dropout_rate=0.1
        --set training.log_every=1 --set training.eval_every=0 --set training.steps=6
        --set training.checkpoint_every=3 --set training.keep_checkpoints=5)
fail() { echo "FAIL: $*"; exit 1; }
# shellcheck source=../util/run_logs.sh
source "$src/tests/util/run_logs.sh"
same_checkpoint() {  # two checkpoint directories with byte-identical files
  local f
  for f in dense.bin experts.bin rank-00000.pb rank-00001.pb manifest.pb; do
    cmp "$1/$f" "$2/$f" || fail "$2/$f differs from $1/$f"
  done
}

# ---- 1. export and import ----------------------------------------------------------------------
"${mpiexec[@]}" -np 2 "$bin/mowe_pretrain" "${common[@]}" --set "training.checkpoint_dir=$out/train" \
  > "$out/train.log" 2>&1 || { cat "$out/train.log"; fail "training"; }
ckpt="$out/train/step-00000003"
"$convert" inspect "$ckpt" > "$out/inspect.txt"
grep -q "step 3, format version 1" "$out/inspect.txt" || fail "inspect: no step line"
grep -q -E "^  experts bucket 1 +4,096$" "$out/inspect.txt" || fail "inspect: bucket 1 count"
"$convert" inspect "$ckpt" --config | grep -q "d_model: 16" || fail "inspect --config"
"$convert" verify "$ckpt" | grep -q "^OK: 150 tensors, 359040 bytes verified" ||
  fail "verify of the trained checkpoint"

"$convert" export "$ckpt" --format safetensors --out "$out/export/model.safetensors"
"$convert" export "$ckpt" --format safetensors --out "$out/shards" --shard-size 65536
[ -f "$out/shards/model.safetensors.index.json" ] || fail "no index for the shards"
shards=$(ls "$out/shards" | grep -c -E '^model-[0-9]{5}-of-[0-9]{5}\.safetensors$')
[ "$shards" -ge 4 ] || fail "only $shards shards of 64 KiB"
"$convert" import "$out/export/model.safetensors" --out "$out/imported/step-00000003"
"$convert" import "$out/shards/model.safetensors.index.json" --out "$out/imported_shards/step-00000003"
same_checkpoint "$ckpt" "$out/imported/step-00000003"
same_checkpoint "$ckpt" "$out/imported_shards/step-00000003"
"$convert" verify "$out/imported/step-00000003" | grep -q "^OK: 150 tensors" || fail "verify imported"
echo "export/import: one file and $shards shards, byte-identical checkpoints"

# ---- 2. training resumes from the imported checkpoint ------------------------------------------
"${mpiexec[@]}" -np 2 "$bin/mowe_pretrain" "${common[@]}" \
  --set "training.checkpoint_dir=$out/imported" --resume "$out/imported/step-00000003" \
  > "$out/resumed.log" 2>&1 || { cat "$out/resumed.log"; fail "resume from the imported checkpoint"; }
grep -q "resumed from $out/imported/step-00000003 at step 3" "$out/resumed.log" ||
  fail "the resumed run did not load the imported checkpoint"
[ "$(losses "$out/resumed.log" 0 | wc -l)" = 3 ] || fail "the resumed run did not train 3 steps"
diff <(losses "$out/train.log" 4) <(losses "$out/resumed.log" 0) ||
  fail "losses after resuming from the imported checkpoint differ from the straight run"
for f in dense.bin experts.bin; do
  cmp "$out/train/step-00000006/$f" "$out/imported/step-00000006/$f" ||
    fail "step 6 $f differs between the straight and the resumed run"
done
echo "resume from the imported checkpoint: losses of steps 4-6 and the step-6 checkpoint identical"

# ---- 3. verify finds damage --------------------------------------------------------------------
damaged="$out/damaged"
cp -r "$ckpt" "$damaged"
offset() {  # the byte offset of a tensor in its file, from inspect's table
  awk -v t="$1" '$1 == t { for (i = 1; i <= NF; ++i) if ($i == "at") { sub(",", "", $(i + 1)); print $(i + 1) } }' \
    "$out/inspect.txt"
}
flip() {  # file offset: xor one byte
  local byte
  byte=$(od -A n -t u1 -j "$2" -N 1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 0x20)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
lm=$(offset decoder.lm_head)
wo=$(offset mowe.bucket0.wo)
[ -n "$lm" ] && [ -n "$wo" ] || fail "no offsets in inspect's table"
flip "$damaged/dense.bin" $((lm + 100))
flip "$damaged/experts.bin" $((wo + 20))
set +e
"$convert" verify "$damaged" > "$out/verify_damaged.txt"
status=$?
set -e
cat "$out/verify_damaged.txt"
[ "$status" = 1 ] || fail "verify of a damaged checkpoint exited $status, not 1"
grep -q "^FAIL: $damaged/dense.bin: tensor 'decoder.lm_head' chunk 0 (rows 0..15, bytes $lm\.\.$((lm + 4096))) is damaged: CRC32C" \
  "$out/verify_damaged.txt" || fail "verify did not name dense.bin and decoder.lm_head"
grep -q "^FAIL: $damaged/experts.bin: tensor 'mowe.bucket0.wo' chunk 0 (rows 0..13, bytes $wo\.\.$((wo + 14336))) is damaged" \
  "$out/verify_damaged.txt" || fail "verify did not name experts.bin and mowe.bucket0.wo"
grep -q "2 problems; 148 tensors" "$out/verify_damaged.txt" || fail "verify's summary"
# Export reads through the CRCs too: a damaged checkpoint is not exported.
if "$convert" export "$damaged" --format safetensors --out "$out/x.safetensors" 2> "$out/err.txt"; then
  fail "a damaged checkpoint was exported"
fi
# It stops at the first damaged tensor it reads, in the checkpoint's order.
grep -qE "tensor '(decoder.lm_head|mowe.bucket0.wo)' chunk 0 .* is damaged" "$out/err.txt" ||
  { cat "$out/err.txt"; fail "export error"; }
[ ! -e "$out/x.safetensors" ] && [ ! -e "$out/x.safetensors.tmp" ] || fail "export left a file behind"

# ---- 4. command-line errors --------------------------------------------------------------------
expect_error() {  # pattern, command...: exit status 2 and one line matching the pattern
  local pattern=$1
  shift
  if "$@" > "$out/out.txt" 2> "$out/err.txt"; then fail "succeeded: $*"; fi
  grep -q -E "^mowe_convert: error: .*$pattern" "$out/err.txt" || { cat "$out/err.txt"; fail "$*: no '$pattern'"; }
  [ "$(wc -l < "$out/err.txt")" = 1 ] || { cat "$out/err.txt"; fail "$*: more than one line"; }
}
expect_error "the one export format is safetensors" "$convert" export "$ckpt" --format onnx --out "$out/y"
expect_error "unknown command 'convert'" "$convert" convert "$ckpt"
expect_error "no such checkpoint directory" "$convert" inspect "$out/nothing"
expect_error "--shard-size expects an integer >= 1, not 'big'" "$convert" export "$ckpt" --format safetensors --out "$out/y" --shard-size big
expect_error "imported/step-00000003 exists" "$convert" import "$out/export/model.safetensors" --out "$out/imported/step-00000003"
expect_error "routing vocabulary '/nonexistent.pb'.*--set data.routing_vocab=PATH" "$convert" export "$ckpt" --format safetensors --out "$out/y" --set data.routing_vocab=/nonexistent.pb
head -c 5000 "$out/export/model.safetensors" > "$out/cut.safetensors"
expect_error "cut.safetensors: header length [0-9]+ is larger than the rest of the file" "$convert" import "$out/cut.safetensors" --out "$out/z"
size=$(stat -c %s "$out/export/model.safetensors")
head -c $((size - 10)) "$out/export/model.safetensors" > "$out/short.safetensors"
expect_error "short.safetensors: tensor \"mowe.routing.buckets\": data_offsets .* point past the end" "$convert" import "$out/short.safetensors" --out "$out/z"
echo "PASS"
