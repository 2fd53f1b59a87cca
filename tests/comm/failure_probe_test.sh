#!/bin/sh
# Runs comm_failure_probe under mpiexec and checks that the job ends on its own, quickly, with a
# non-zero status and a message matching a pattern.
# usage: failure_probe_test.sh MAX_SECONDS PATTERN COMMAND [ARGS...]
max_seconds=$1
pattern=$2
shift 2
out=$(mktemp)
start=$(date +%s)
# The outer timeout only guards the test itself: the job must end well before it.
timeout --kill-after=5 $((max_seconds * 3)) "$@" >"$out" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
cat "$out"
echo "failure_probe_test: exit status $status after ${elapsed}s"
fail() {
  echo "failure_probe_test: FAILED: $1"
  rm -f "$out"
  exit 1
}
[ "$status" -ne 0 ] || fail "the job succeeded although a rank failed"
[ "$status" -ne 124 ] || fail "the job hung and had to be killed"
[ "$elapsed" -le "$max_seconds" ] || fail "the job took ${elapsed}s (limit ${max_seconds}s)"
grep -Eq "$pattern" "$out" || fail "no line matches: $pattern"
rm -f "$out"
echo "failure_probe_test: passed"
