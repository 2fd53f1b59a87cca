#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds and runs every test.
#   launch/test.sh                 everything (what CI runs)
#   launch/test.sh --no-sanitize   skip the AddressSanitizer/UBSan build of the unit tests
# Build directories: build/ (release build, CUDA target included where nvcc and NCCL exist),
# build-sanitize/ (CPU-only, -fsanitize=address,undefined).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=1
for arg in "$@"; do
  case "$arg" in
    --no-sanitize) sanitize=0 ;;
    *) echo "usage: launch/test.sh [--no-sanitize]" >&2; exit 2 ;;
  esac
done

jobs=$(nproc)
launch/setup.sh

echo "[test] configure and build: build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
echo "[test] run all tests: build/"
ctest --test-dir build --output-on-failure -j"$jobs"

if [ "$sanitize" = 1 ]; then
  echo "[test] configure and build: build-sanitize/ (address, undefined)"
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DMOWE_SANITIZE=ON -DMOWE_WITH_CUDA=OFF
  cmake --build build-sanitize -j"$jobs"
  echo "[test] run unit tests under the sanitizers"
  # Leak checking is off because OpenMPI keeps allocations alive past MPI_Finalize.
  ASAN_OPTIONS=detect_leaks=0 ctest --test-dir build-sanitize --output-on-failure -j"$jobs" -L unit
fi
echo "[test] all tests passed"
