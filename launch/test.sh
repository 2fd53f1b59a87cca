#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds and runs every test.
#   launch/test.sh                 everything (what CI runs)
#   launch/test.sh --no-sanitize   skip the AddressSanitizer/UBSan build and its tests
# Build directories: build/ (release build, CUDA target included where nvcc and NCCL exist),
# build-sanitize/ (CPU-only, -O1, -fsanitize=address,undefined, leak checking on): the one-process
# tests and the MPI tests that do not train.
# Tests that skip (exit 77: no GPU, no TensorBoard, ...) are reported by ctest as skipped, and the
# end summary counts them, with the GoogleTest cases skipped inside binaries that also ran others.
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
summary=()
launch/setup.sh

# run_ctest BUILD_DIR [ctest args...]: runs ctest (failures stop the script) and adds to the
# summary: tests run and skipped (exit 77, listed by ctest as "Skipped"), and the GoogleTest
# cases skipped inside binaries that passed ("N of M cases skipped", tests/util/skip_status.h),
# per binary and in all, from the output ctest keeps of every test (LastTest.log).
run_ctest() {
  local dir=$1
  shift
  local log="$dir/ctest.log" start=$SECONDS
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" "$@" 2>&1 | tee "$log"
  local tests skipped partial cases
  tests=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#' "$log" || true)
  skipped=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#.*\*\*\*Skipped' "$log" || true)
  partial=$(awk '/^[0-9]+\/[0-9]+ Test: / { name = $3 }
    /^\[  SKIPS   \] [0-9]+ of [0-9]+ cases skipped/ { sub(/^\[  SKIPS   \] /, ""); print name ": " $0 }' \
    "$dir/Testing/Temporary/LastTest.log")
  cases=$(awk '{ n += $2 } END { print n + 0 }' <<< "$partial")
  summary+=("$dir: $tests tests in $((SECONDS - start)) s, $skipped of them skipped; $cases GoogleTest cases skipped in all:")
  [ -z "$partial" ] || while IFS= read -r line; do summary+=("  $line"); done <<< "$partial"
}

echo "[test] configure and build: build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$jobs"
echo "[test] run all tests: build/"
run_ctest build

if [ "$sanitize" = 1 ]; then
  echo "[test] configure and build: build-sanitize/ (address, undefined; -O1)"
  # -O1 keeps the tests to minutes (at -O0 they take many times longer), and the stacks exact
  # enough. Only the programs the tests run are built (mowe_test_binaries), no benchmarks.
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
    -DMOWE_SANITIZE=ON -DMOWE_WITH_CUDA=OFF
  cmake --build build-sanitize -j"$jobs" --target mowe_test_binaries
  # Leak checking is on everywhere; Open MPI's own allocations, kept past MPI_Finalize, are
  # suppressed by library name only (tests/util/lsan_suppressions.txt). alloc_dealloc_mismatch=0:
  # the SentencePiece module, loaded with RTLD_DEEPBIND, pairs libstdc++'s operator new with the
  # sanitizer's operator delete (data/tokenizer.cc).
  export LSAN_OPTIONS="suppressions=$PWD/tests/util/lsan_suppressions.txt:print_suppressions=0"
  export UBSAN_OPTIONS=print_stacktrace=1
  echo "[test] run the one-process tests under the sanitizers (SentencePiece's included)"
  ASAN_OPTIONS=detect_leaks=1:alloc_dealloc_mismatch=0 run_ctest build-sanitize -L unit -LE mpi
  echo "[test] run the MPI tests under the sanitizers"
  # fast_unwind_on_malloc=0: Open MPI unloads its components (mca_*.so) before the leak check, and
  # its libraries have no frame pointers, so only the slow unwinder reaches a frame that names an
  # Open MPI library. It makes allocation-heavy runs far slower, so the tests that train (label
  # slow, and the one-step training of pretrain_warns_about_core_binding) are not run here, and
  # the tiny_data fixture's files are the release build's: mowe_vocab's SentencePiece training
  # does not finish within its 300 s under AddressSanitizer.
  mkdir -p build-sanitize/test_data
  cp -r build/test_data/tiny build-sanitize/test_data/
  ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:alloc_dealloc_mismatch=0 \
    run_ctest build-sanitize -L mpi -LE 'integration|bench_check|slow' -FS tiny_data \
    -E pretrain_warns_about_core_binding
  echo "[test] run the trainer's paths under the sanitizers"
  # Two trainer cases at 2 ranks (tests/launch/CMakeLists.txt, trainer_sanitized). Leak checking
  # is off for them: matching Open MPI's leaks needs the slow unwinder above, with which training
  # takes many minutes; the same code's leaks are checked by the one-process tests.
  ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0 \
    run_ctest build-sanitize -L trainer_sanitized -FS tiny_data
fi
echo "[test] summary"
printf '  %s\n' "${summary[@]}"
echo "[test] all tests passed"
