#!/usr/bin/env bash
# The main job on the default configuration, from a fresh machine: installs what is missing,
# builds, builds the WordNet tokenizer and routing vocabulary (once; about a minute), writes the
# dispatch plan for 2 ranks, and pre-trains configs/wordnet_small.textproto on 2 MPI ranks
# (300 steps, a few minutes on 2 cores). Extra arguments go to mowe_pretrain, e.g.
#   launch/quickstart.sh --set training.steps=50
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
build/bin/mowe_plan --config "$config" --world-size "$ranks"

mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
mpirun -np "$ranks" "${mpi_flags[@]}" build/bin/mowe_pretrain --config "$config" "$@"
