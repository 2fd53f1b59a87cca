#!/bin/sh
# Runs a command and passes only when it exits with the expected status AND its output (stdout
# and stderr together) matches an extended regular expression. ctest's PASS_REGULAR_EXPRESSION
# alone ignores the exit status, so a refusal that printed the right words and exited 0 passed.
# usage: expect_exit.sh STATUS PATTERN -- COMMAND [ARGS...]
# PATTERN is matched against the whole output at once ('.' also matches a newline), as ctest did.
if [ $# -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: expect_exit.sh STATUS PATTERN -- COMMAND [ARGS...]" >&2
  exit 2
fi
expected=$1
pattern=$2
shift 3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
status=$?
cat "$out"
failed=0
if [ "$status" -ne "$expected" ]; then
  echo "expect_exit: FAILED: exit status $status, expected $expected"
  failed=1
fi
# -z: the whole output is one record, so a pattern may span lines.
if ! grep -Ezq -e "$pattern" "$out"; then
  echo "expect_exit: FAILED: the output does not match: $pattern"
  failed=1
fi
[ "$failed" = 0 ] && echo "expect_exit: passed (exit status $status, output matches)"
exit "$failed"
