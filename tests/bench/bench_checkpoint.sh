#!/usr/bin/env bash
# Checkpoint write and read speed of mowe_pretrain next to a plain sequential write and read of
# the same bytes on the same disk (dd copying the checkpoint's data files, fsync on write; not
# zeros, which this machine's virtual disk writes several times faster), at 1 and 2 ranks, for
# wordnet_small and for wordnet_small with 1.07 GB of expert parameters (the last bucket's
# experts 64 times wider). Run from the repository root after the quickstart has built the
# WordNet tokenizer and routing vocabulary (runs/wordnet_small/):
#   tests/bench/bench_checkpoint.sh [WORK_DIR]      (default: runs/bench_checkpoint)
# Reads come from the page cache when the machine has the memory (it usually does here): both
# the checkpoint and dd read back files they have just written.
set -euo pipefail
work=${1:-runs/bench_checkpoint}
mkdir -p "$work"
config=configs/wordnet_small.textproto
mpi=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
fig() { grep -o -E "$1" "$2" | tail -1; }

echo "| config | ranks | checkpoint | write | dd write (fsync) | read | dd read |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for variant in small big; do
  extra=()
  [ "$variant" = big ] && extra=(--set "model.mowe.buckets[3].expert_d_ff=256")
  for ranks in 1 2; do
    dir="$work/$variant-np$ranks"
    rm -rf "$dir"
    common=(--config "$config" --set parallel.plan= --set training.steps=1
            --set training.lr_schedule=CONSTANT --set training.warmup_steps=0
            --set training.eval_every=0 --set training.checkpoint_every=0
            --set "training.checkpoint_dir=$dir" "${extra[@]}")
    "${mpi[@]}" -np "$ranks" build/bin/mowe_pretrain "${common[@]}" > "$dir.write.log" 2>&1
    "${mpi[@]}" -np "$ranks" build/bin/mowe_pretrain "${common[@]}" \
      --resume "$dir/step-00000001" > "$dir.read.log" 2>&1
    w=$(fig '\(([0-9.]+) MB in [0-9.]+ s, [0-9.]+ GB/s\)' "$dir.write.log")
    mb=$(echo "$w" | awk '{print substr($1, 2)}')
    wgb=$(echo "$w" | awk '{print $(NF-1)}')
    rgb=$(fig 'read by [0-9]+ ranks in [0-9.]+ s, [0-9.]+ GB/s' "$dir.read.log" | awk '{print $(NF-1)}')
    ddw=$(cat "$dir"/step-00000001/*.bin | dd of="$dir/dd.bin" bs=4M iflag=fullblock conv=fsync 2>&1 | tail -1)
    ddr=$(dd if="$dir/dd.bin" of=/dev/null bs=1M 2>&1 | tail -1)
    rm -f "$dir/dd.bin"
    echo "| wordnet_small${extra:+ (1.07 GB experts)} | $ranks | $mb MB | $wgb GB/s | ${ddw##*, } | $rgb GB/s | ${ddr##*, } |"
  done
done
