#!/usr/bin/env bash
# Training step throughput of this trainer next to a PyTorch baseline of the same model on the same
# batches (tests/bench/t5_torch_baseline.py), in alternating rounds: ours, torch, ours, torch, ...
# The table gives the median over the rounds of real tokens/s, MFU (each against the sgemm peak it
# measured in the same run) and step time, and the ratio ours / torch.
#
#   tests/bench/bench_step_vs_torch.sh [--rounds R] [--warmup W] [--steps N] [--cases LIST]
#   MOWE_BUILD=build-bench tests/bench/bench_step_vs_torch.sh   # another build directory
#
# Cases (LIST is comma-separated, default all):
#   dense-2x1  configs/bench_dense.textproto on 2 ranks x 1 thread (each rank bound to a core)
#   mowe-2x1   configs/bench_mowe.textproto  on 2 ranks x 1 thread (torch too shards the experts
#              over the ranks as the trainer's plan does, exchanging tokens over gloo)
#   mowe-1x2   configs/bench_mowe.textproto  on 1 rank  x 2 threads (--bind-to none: mpirun
#              would bind a single rank to one core, and its 2 threads would share it)
# Builds mowe_vocab and mowe_bench_step, and the WordNet tokenizer and routing vocabulary in
# runs/bench/ once (about a minute); the dispatch plans are built in memory. Needs Debian's
# python3-torch (/usr/bin/python3); the baseline sets its own thread pools (OMP_NUM_THREADS,
# OPENBLAS_NUM_THREADS, OMP_WAIT_POLICY=PASSIVE unless set) and runs the OpenBLAS kernel set ours
# ran (OPENBLAS_CORETYPE, from our BENCH_STEP line). Raw results: runs/bench/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=3 warmup=3 steps=10 cases=dense-2x1,mowe-2x1,mowe-1x2
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds R] [--warmup W] [--steps N] [--cases LIST]" >&2; exit 2 ;;
  esac
done
build=${MOWE_BUILD:-build}
python=/usr/bin/python3
"$python" -c 'import torch' 2>/dev/null || { echo "$python has no torch (apt install python3-torch)" >&2; exit 1; }

[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)" --target mowe_vocab mowe_bench_step
bin=$build/bin
out=runs/bench
mkdir -p "$out"
# The routing vocabulary is rebuilt when its file format changed since it was written (the
# trainer refuses other versions), and the dumped batches with it.
format=$(grep -o 'kFormatVersion = [0-9]*' data/routing_vocab.h | grep -o '[0-9]*$')
if [ ! -f "$out/routing_vocab.pb" ] || [ ! -f "$out/spm.model" ] ||
  [ "$(cat "$out/routing_vocab.format" 2>/dev/null)" != "$format" ]; then
  "$bin/mowe_vocab" --config configs/bench_mowe.textproto
  echo "$format" > "$out/routing_vocab.format"
  rm -f "$out"/batches-*.safetensors
fi

mpi=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
results=$out/results.jsonl
: > "$results"
echo "[bench] $(date -u +%FT%TZ) $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# case -> config, ranks, threads, binding
setup() {
  case "$1" in
    dense-2x1) config=configs/bench_dense.textproto np=2 threads=1 bind=(--bind-to core) ;;
    mowe-2x1) config=configs/bench_mowe.textproto np=2 threads=1 bind=(--bind-to core) ;;
    mowe-1x2) config=configs/bench_mowe.textproto np=1 threads=2 bind=(--bind-to none) ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
  esac
}

# Appends the run's BENCH_STEP line to the results with the case and round; shows the summary.
record() {
  local case=$1 round=$2 log=$3 line
  line=$(grep -o 'BENCH_STEP {.*}' "$log" | tail -1 | sed 's/^BENCH_STEP //') ||
    { echo "[bench] no result in $log:" >&2; tail -20 "$log" >&2; exit 1; }
  echo "{\"case\": \"$case\", \"round\": $round, \"result\": $line}" >> "$results"
  grep -E 'real tokens/s|^step [0-9.]+ s|MFU' "$log" | sed 's/^/    /'
}

IFS=, read -r -a list <<< "$cases"
for c in "${list[@]}"; do
  setup "$c"
  # The batches both programs train on (the global batches do not depend on the world size) and
  # the expert placement of this world size, which the baseline follows.
  batches=$out/batches-$(basename "$config" .textproto)-np$np-$((warmup + steps)).safetensors
  if [ ! -f "$batches" ]; then
    echo "[bench] $c: dumping the batches of $((warmup + steps)) steps to $batches"
    "${mpi[@]}" -np "$np" "${bind[@]}" "$bin/mowe_bench_step" --config "$config" \
      --warmup "$warmup" --steps "$steps" --threads "$threads" --dump-batches "$batches" \
      > "$out/dump-$c.log" 2>&1 || { tail -20 "$out/dump-$c.log" >&2; exit 1; }
  fi
  for ((r = 1; r <= rounds; r++)); do
    echo "[bench] $c round $r/$rounds: ours (load $(cut -d' ' -f1 /proc/loadavg))"
    log=$out/$c-ours-$r.log
    "${mpi[@]}" -np "$np" "${bind[@]}" "$bin/mowe_bench_step" --config "$config" \
      --warmup "$warmup" --steps "$steps" --threads "$threads" > "$log" 2>&1 || true
    record "$c" "$r" "$log"
    echo "[bench] $c round $r/$rounds: torch (load $(cut -d' ' -f1 /proc/loadavg))"
    log=$out/$c-torch-$r.log
    # The baseline runs the OpenBLAS kernels ours ran (it links the same OpenBLAS, which would
    # otherwise keep its own choice: runtime/cpu/blas_kernels.h).
    kernels=$(tail -1 "$results" | grep -o '"blas_kernels": "[A-Za-z0-9]*"' | cut -d'"' -f4)
    "${mpi[@]}" -np "$np" "${bind[@]}" -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=$((29500 + RANDOM % 500)) \
      -x OPENBLAS_CORETYPE="$kernels" \
      "$python" tests/bench/t5_torch_baseline.py --batches "$batches" --warmup "$warmup" \
      --steps "$steps" --threads "$threads" > "$log" 2>&1 || true
    record "$c" "$r" "$log"
  done
done

echo "[bench] done, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$python" - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cases = list(dict.fromkeys(r["case"] for r in rows))
print(f"\nmedian of {max(r['round'] for r in rows)} alternating rounds\n")
print("| case | ours tokens/s | torch tokens/s | ours / torch | ours MFU | torch MFU | ours step s | torch step s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in cases:
    med = {}
    for impl in ("mowe", "torch"):
        rs = [r["result"] for r in rows if r["case"] == c and r["result"]["impl"] == impl]
        med[impl] = {k: statistics.median(x[k] for x in rs) for k in ("tokens_per_s", "mfu", "step_s")}
    o, t = med["mowe"], med["torch"]
    print(f"| {c} | {o['tokens_per_s']:,.0f} | {t['tokens_per_s']:,.0f} | "
          f"{o['tokens_per_s'] / t['tokens_per_s']:.2f} | {100 * o['mfu']:.1f}% | "
          f"{100 * t['mfu']:.1f}% | {o['step_s']:.3f} | {t['step_s']:.3f} |")
EOF
