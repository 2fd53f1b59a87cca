#!/usr/bin/env bash
# mowe_pretrain runs OpenBLAS's best kernel set for this CPU (runtime/cpu/blas_kernels.h): where
# OpenBLAS falls back to a generic set on a CPU with AVX2 and FMA, every rank restarts once with
# OPENBLAS_CORETYPE set; a user's OPENBLAS_CORETYPE is kept as given, and MOWE_KEEP_BLAS_KERNELS=1
# keeps OpenBLAS's own choice with a warning naming the faster set.
#   blas_kernels_e2e.sh BIN_DIR SOURCE_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2
shift 2
mpiexec=("$@")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$work/log" 2>/dev/null; exit 1; }
generic='Prescott|Core2|Penryn|Dunnington|Nehalem|Atom|Sandybridge'

# describe NAME ENV... -- NP: the [blas] lines of every rank of `mowe_pretrain --describe`.
describe() {
  local np=$1
  shift
  env "$@" "${mpiexec[@]}" -np "$np" "$bin/mowe_pretrain" \
    --config "$src/configs/tiny.textproto" --describe --log-all-ranks > "$work/log" 2>&1 ||
    fail "mowe_pretrain --describe exited $? with $*"
  grep '\[blas\]' "$work/log" > "$work/blas" || fail "no [blas] line with $*"
  [ "$(wc -l < "$work/blas")" -eq "$np" ] || fail "expected one [blas] line per rank with $*"
}

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }

# 1. By default no rank runs a generic set on a CPU that runs AVX2 kernels.
describe 2 MOWE_UNUSED=1
if has avx2 && has fma; then
  ! grep -q -E "OpenBLAS kernels: ($generic)\b" "$work/blas" ||
    fail "a generic kernel set runs on a CPU with AVX2 and FMA"
  ! grep -q warning "$work/blas" || fail "a warning about the kernels by default"
fi
echo "default: $(sed 's/.*\[blas\] //' "$work/blas" | sort -u)"

# 2. The user's choice is kept, without a restart or a warning.
describe 2 OPENBLAS_CORETYPE=Prescott
[ "$(grep -c 'OpenBLAS kernels: Prescott (OPENBLAS_CORETYPE=Prescott in the environment)' \
  "$work/blas")" -eq 2 ] || fail "OPENBLAS_CORETYPE=Prescott not kept on every rank"

# 3. MOWE_KEEP_BLAS_KERNELS=1: OpenBLAS's choice; a warning where it is generic and a better set
#    exists.
describe 1 MOWE_KEEP_BLAS_KERNELS=1
if grep -q -E "OpenBLAS kernels: ($generic)," "$work/blas"; then
  grep -q -E '\[warning\] \[blas\] .*though this CPU runs the faster (SkylakeX|Haswell) set \(MOWE_KEEP_BLAS_KERNELS is set\)' \
    "$work/blas" || fail "no warning naming the faster set"
else
  grep -q "(OpenBLAS's choice)" "$work/blas" || fail "OpenBLAS's choice not reported as such"
fi
echo "blas kernels: restart, user's choice and MOWE_KEEP_BLAS_KERNELS behave"
