#!/usr/bin/env bash
# Builds the fuzz targets of tests/fuzz/ with clang (libFuzzer, AddressSanitizer,
# UndefinedBehaviorSanitizer) and runs each for SECONDS, starting from its committed corpus
# tests/fuzz/corpus/<target>/ (read only: new inputs go to BUILD_DIR/corpus/<target>/). A crash
# leaves its input in BUILD_DIR/crash-<target>-* and fails; reproduce it with
#   BUILD_DIR/fuzz_<target> BUILD_DIR/crash-<target>-<hash>
# Exits 77 (ctest: skipped) when clang++ or libFuzzer is missing: launch/setup.sh installs them
# (Debian: clang, libclang-rt-14-dev).
#   run_fuzzers.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-fuzz}
seconds=${2:-60}
mkdir -p "$build"
build=$(cd "$build" && pwd)

if ! command -v clang++ > /dev/null; then
  echo "SKIP: clang++ is not installed (apt-get install clang libclang-rt-14-dev)"
  exit 77
fi
probe="$build/probe.cc"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' > "$probe"
if ! clang++ -fsanitize=fuzzer,address "$probe" -o "$build/probe" 2> "$build/probe.log"; then
  cat "$build/probe.log"
  echo "SKIP: clang++ cannot link libFuzzer (apt-get install libclang-rt-14-dev)"
  exit 77
fi

cmake -S "$src/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build/cmake.log" 2>&1 || { cat "$build/cmake.log"; exit 1; }
cmake --build "$build" -j2 > "$build/build.log" 2>&1 || { tail -50 "$build/build.log"; exit 1; }

status=0
for target in checkpoint_manifest safetensors_header; do
  scratch="$build/corpus/$target"
  mkdir -p "$scratch"
  dict=()
  [ "$target" = safetensors_header ] && dict=(-dict="$src/tests/fuzz/safetensors.dict")
  echo "fuzz_$target: $seconds s from $src/tests/fuzz/corpus/$target"
  # -rss_limit_mb: a damaged length must never decide an allocation; -timeout: nor a loop.
  if ! "$build/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
      -max_len=65536 -print_final_stats=1 "${dict[@]}" -artifact_prefix="$build/crash-$target-" \
      "$scratch" "$src/tests/fuzz/corpus/$target" > "$build/$target.log" 2>&1; then
    tail -60 "$build/$target.log"
    echo "FAIL: fuzz_$target found a crash: input in $build/crash-$target-*"
    status=1
    continue
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$build/$target.log" | tr '\n' ' '
  echo
done
[ "$status" = 0 ] && echo "PASS: every fuzz target ran $seconds s without a crash"
exit "$status"
