#!/bin/sh
# Usage: cuda_architectures_test.sh COMPILE_COMMANDS_JSON "80;90"
# Passes when every CUDA compilation in the build emits machine code (sm_XX) for each configured
# architecture and for no other: an H100 must not be left to JIT old PTX.
set -eu
json=$1
archs=$(echo "$2" | tr ';' ' ' | sed 's/-real//g; s/-virtual//g')
case "$archs" in
  *[!0-9\ ]*) echo "SKIP: architectures '$2' are not a list of numbers"; exit 77 ;;
esac
[ -f "$json" ] || { echo "FAIL: $json does not exist"; exit 1; }
cuda_units=$(grep -c '"file": ".*\.cu"' "$json" || true)
[ "$cuda_units" -gt 0 ] || { echo "FAIL: no .cu file in $json"; exit 1; }
for a in $archs; do
  n=$(grep -o "arch=compute_$a,code=\[compute_$a,sm_$a\]\|arch=compute_$a,code=sm_$a" "$json" | wc -l)
  [ "$n" -eq "$cuda_units" ] || {
    echo "FAIL: sm_$a code in $n of $cuda_units CUDA compilations"
    exit 1
  }
done
others=$(grep -o 'arch=compute_[0-9a-z]*' "$json" | sort -u | sed 's/arch=compute_//' |
         while read -r a; do case " $archs " in *" $a "*) ;; *) echo "$a" ;; esac; done)
[ -z "$others" ] || { echo "FAIL: unexpected architectures: $others"; exit 1; }
echo "PASS: $cuda_units CUDA compilations, each with machine code for: $archs"
