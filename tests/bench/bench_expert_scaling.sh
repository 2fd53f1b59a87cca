#!/usr/bin/env bash
# Step time and peak memory of the same model with ~8K and ~1M experts at equal expert
# parameters (configs/bench_experts_8k.textproto, configs/bench_experts_1m.textproto), on the
# SYNTHETIC corpus: builds each config's routing vocabulary and 1-rank plan in a run directory,
# then trains STEPS steps of each config REPEATS times, alternating the configs so that a change
# in the machine's load hits both. One rank under `mpirun --bind-to none`, so its BLAS threads
# get every core. Prints, per config, the median step time (train/step_seconds of metrics.jsonl,
# the first step of every run left out as warm-up), the peak resident set of the rank
# (/usr/bin/time's maximum RSS) and the 1M/8K ratios.
#
# The first step is shown apart: it pays for touching the memory of every expert's gradient and
# optimizer state once, which a long run pays once.
#
#   tests/bench/bench_expert_scaling.sh [BIN_DIR [STEPS [REPEATS [RUN_DIR]]]]
#   defaults: build/bin, 8 steps, 2 repeats, a temporary directory (removed at the end);
#   REPEATS 0 with a RUN_DIR summarises the runs already there.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$src/build/bin}
steps=${2:-8}
repeats=${3:-2}
if [ -n "${4:-}" ]; then
  work=$4
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mpirun=(mpirun -np 1 --bind-to none)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
configs=(8k 1m)

args() {  # config: the command-line arguments placing its files in $work
  echo --config "$src/configs/bench_experts_$1.textproto" \
    --set "data.routing_vocab=$work/$1/routing_vocab.pb" --set "parallel.plan=$work/$1/plan.pb"
}

for c in "${configs[@]}"; do
  mkdir -p "$work/$c"
  start=$(date +%s.%N)
  # shellcheck disable=SC2046
  "$bin/mowe_vocab" $(args "$c") > "$work/$c/vocab.log" 2>&1 || { cat "$work/$c/vocab.log"; exit 1; }
  # shellcheck disable=SC2046
  "$bin/mowe_plan" $(args "$c") --world-size 1 > "$work/$c/plan.log" 2>&1 ||
    { cat "$work/$c/plan.log"; exit 1; }
  printf '%s: routing vocabulary and plan in %.1f s\n' "$c" "$(echo "$(date +%s.%N) - $start" | bc)"
done

for r in $(seq "$repeats"); do
  for c in "${configs[@]}"; do
    run="$work/$c/run$r"
    rm -rf "$run"
    mkdir -p "$run"
    # shellcheck disable=SC2046
    if ! "${mpirun[@]}" /usr/bin/time -f "%M" -o "$run/maxrss_kb" "$bin/mowe_pretrain" $(args "$c") \
      --set "training.checkpoint_dir=$run/checkpoints" --set "training.steps=$steps" \
      --set training.checkpoint_every=0 > "$run/train.log" 2>&1; then
      tail -20 "$run/train.log"
      exit 1
    fi
    rm -rf "$run/checkpoints"  # gigabytes; only the metrics are needed
    echo "$c run $r: $(grep -c '"train/step_seconds"' "$run/metrics.jsonl") steps, peak RSS $(($(cat "$run/maxrss_kb") / 1024)) MiB"
  done
done

python3 - "$work" "${configs[@]}" <<'PY'
import json, statistics, sys, glob
work, configs = sys.argv[1], sys.argv[2:]
result = {}
for c in configs:
    times, first, rss = [], [], []
    for run in sorted(glob.glob(f"{work}/{c}/run*")):
        for line in open(f"{run}/metrics.jsonl"):
            m = json.loads(line)
            if "train/step_seconds" in m:
                (first if m["step"] == 1 else times).append(m["train/step_seconds"])
        rss.append(int(open(f"{run}/maxrss_kb").read()) / 1024)
    result[c] = (statistics.median(times), min(times), max(times), len(times),
                 statistics.median(first), max(rss))
print(f"\n{'config':6} {'median step s':>13} {'min..max s':>14} {'steps':>5} {'first step s':>12} "
      f"{'peak RSS MiB':>12}")
for c, (med, lo, hi, n, first, rss) in result.items():
    print(f"{c:6} {med:13.3f} {lo:6.3f}..{hi:6.3f} {n:5d} {first:12.1f} {rss:12.0f}")
a, b = result[configs[0]], result[configs[1]]
print(f"ratio {configs[1]}/{configs[0]}: step time {b[0] / a[0]:.2f}, first step "
      f"{b[4] / a[4]:.1f}, peak RSS {b[5] / a[5]:.2f}")
PY
