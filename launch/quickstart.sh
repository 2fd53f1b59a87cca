#!/usr/bin/env bash
# The main job on the default configuration, from a fresh machine: installs what is missing,
# builds, builds the WordNet tokenizer and routing vocabulary (once; about a minute), writes the
# dispatch plan for 2 ranks, and pre-trains configs/wordnet_small.textproto on 2 MPI ranks
# (300 steps, a few minutes on 2 cores), then plots the loss curves and prints a summary: final
# training and validation loss, the checkpoint, the metrics and the plot. Extra arguments go to
# mowe_pretrain, e.g.
#   launch/quickstart.sh --set training.steps=50
# Run again, it continues the run from its newest checkpoint (--resume auto; a run that is
# complete has nothing to do, and a higher training.steps trains on). To start over and replace
# the checkpoints of runs/wordnet_small: launch/quickstart.sh --resume none
set -euo pipefail
cd "$(dirname "$0")/.."

config=configs/wordnet_small.textproto
ranks=${MOWE_RANKS:-2}

launch/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)" --target mowe_vocab mowe_plan mowe_pretrain

if [ ! -f runs/wordnet_small/routing_vocab.pb ] || [ ! -f runs/wordnet_small/spm.model ]; then
  build/bin/mowe_vocab --config "$config"
fi
# A routing vocabulary from an older version (or a damaged one) is refused by mowe_plan with the
# reason: build it again once, then let a second failure stop the script.
if ! build/bin/mowe_plan --config "$config" --world-size "$ranks"; then
  echo "[quickstart] rebuilding the tokenizer and routing vocabulary"
  build/bin/mowe_vocab --config "$config"
  build/bin/mowe_plan --config "$config" --world-size "$ranks"
fi

mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
# Each rank runs cores / ranks BLAS threads. mpirun binds a rank to one core when it starts 2 ranks
# or fewer, which would put a rank's threads on one core: with more than one thread per rank, no
# binding (one rank per core stays bound, the best placement then).
[ $(($(nproc) / ranks)) -gt 1 ] && mpi_flags+=(--bind-to none)
# mowe_pretrain refuses to start over checkpoints without --resume: continue unless told otherwise.
resume=(--resume auto)
for arg in "$@"; do
  case $arg in --resume | --resume=*) resume=() ;; esac
done
log=runs/wordnet_small/pretrain.log
mkdir -p runs/wordnet_small
mpirun -np "$ranks" "${mpi_flags[@]}" build/bin/mowe_pretrain --config "$config" "${resume[@]}" \
  "$@" 2>&1 | tee "$log"

# Nothing to plot or summarise after --dry-run, --describe, or a run that was already done.
if [ -f runs/wordnet_small/metrics.jsonl ]; then
  launch/mowe_plot runs/wordnet_small runs/wordnet_small/loss.png
fi
summary=$({ grep -o '\[pretrain\] summary: .*' "$log" || true; } | tail -1 |
  sed 's/^\[pretrain\] summary: //')
echo
if [ -z "$summary" ] && grep -q 'nothing to train' "$log"; then
  summary="the run was already complete (raise training.steps to train on, or pass --resume none to start over)"
fi
echo "quickstart finished: ${summary:-no summary line in $log}"
echo "  log:  $log"
echo "  plot: runs/wordnet_small/loss.png (launch/mowe_plot RUN_DIR draws it from metrics.jsonl)"
