#!/usr/bin/env bash
# The main job on the default configuration, from a fresh machine: installs what is missing,
# builds, and runs mowe_pretrain on 2 ranks. Until the training loop lands this is a dry run
# (config validated on every rank, ranks agree, MPI works), followed by the matmul benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

launch/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)" --target mowe_pretrain mowe_bench_matmul

mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
mpirun -np 2 "${mpi_flags[@]}" build/bin/mowe_pretrain \
  --config configs/wordnet_small.textproto --dry-run
build/bin/mowe_bench_matmul --reps 10
