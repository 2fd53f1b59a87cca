#!/bin/sh
# launch/mowe_plot on the run run_metrics_test's TfeventsFixture writes (a NaN loss, eval points,
# a resume) and on a longer hand-made run with a partial last line: each gives a non-empty PNG,
# by default in RUN_DIR/loss.png; and its errors: a missing metrics.jsonl, a run without
# train/loss, gnuplot not installed, an unknown option.
#   mowe_plot_test.sh LAUNCH_MOWE_PLOT RUN_METRICS_TEST_BINARY
set -u
plot=$1
writer=$2
tmp=$(mktemp -d)
passed=0
failed=0

ok() { passed=$((passed + 1)); }
fail() {
  echo "FAIL: $*" >&2
  failed=$((failed + 1))
}

# is_png FILE: non-empty and starting with the 8-byte PNG signature.
is_png() {
  [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
}

# expect_error NAME PATTERN COMMAND...: COMMAND exits non-zero and its stderr matches PATTERN.
expect_error() {
  name=$1
  pattern=$2
  shift 2
  if "$@" >"$tmp/out" 2>"$tmp/err"; then
    fail "$name: exit 0, expected an error matching '$pattern'"
  elif grep -q -- "$pattern" "$tmp/err"; then
    ok
  else
    fail "$name: stderr does not match '$pattern': $(cat "$tmp/err")"
  fi
}

MOWE_METRICS_FIXTURE_DIR=$tmp/fixture "$writer" --gtest_filter=TfeventsFixture.WritesKnownRun \
  >"$tmp/writer.log" 2>&1 || {
  cat "$tmp/writer.log"
  echo "FAIL: the fixture writer failed" >&2
  exit 1
}
if "$plot" "$tmp/fixture" >"$tmp/out" 2>"$tmp/err" && is_png "$tmp/fixture/loss.png"; then
  ok
else
  fail "fixture run: no PNG in $tmp/fixture/loss.png: $(cat "$tmp/out" "$tmp/err")"
fi
grep -q "1 non-finite train/loss value(s) left out" "$tmp/err" && ok ||
  fail "fixture run: the NaN loss is not reported: $(cat "$tmp/err")"

mkdir -p "$tmp/long" "$tmp/out dir"
awk 'BEGIN {
  for (s = 1; s <= 300; s++) {
    printf "{\"step\":%d,\"time\":1700000000.%03d,\"train/loss\":%.6f,\"train/lr\":0.001", s, s % 1000, 2 + 8 * exp(-s / 50)
    if (s % 50 == 0) printf ",\"eval/loss\":%.6f", 2.2 + 8 * exp(-s / 50)
    printf "}\n"
  }
  printf "{\"step\":301,\"ti"
}' >"$tmp/long/metrics.jsonl"
if "$plot" --log "$tmp/long" "$tmp/out dir/curve.png" >"$tmp/out" 2>"$tmp/err" &&
  is_png "$tmp/out dir/curve.png"; then
  ok
else
  fail "long run with --log: no PNG in '$tmp/out dir/curve.png': $(cat "$tmp/out" "$tmp/err")"
fi
grep -q "1 unreadable line(s)" "$tmp/err" && ok ||
  fail "long run: the partial line is not reported: $(cat "$tmp/err")"

mkdir -p "$tmp/empty" "$tmp/eval_only"
echo '{"step":1,"time":1.5,"eval/loss":3}' >"$tmp/eval_only/metrics.jsonl"
expect_error "missing metrics.jsonl" "$tmp/empty/metrics.jsonl does not exist" "$plot" "$tmp/empty"
expect_error "no train/loss" "has no finite train/loss value to plot" "$plot" "$tmp/eval_only"
expect_error "no gnuplot" "launch/setup.sh installs it" \
  env MOWE_GNUPLOT=/nonexistent/gnuplot "$plot" "$tmp/long"
expect_error "missing output directory" "directory $tmp/nowhere does not exist" \
  "$plot" "$tmp/long" "$tmp/nowhere/x.png"
expect_error "unknown option" "unknown option --logx" "$plot" --logx "$tmp/long"

echo "$passed passed, $failed failed"
if [ "$failed" -eq 0 ]; then
  rm -rf "$tmp"
else
  echo "files kept in $tmp"
  exit 1
fi
