#!/usr/bin/env bash
# Keeps the PyTorch baseline honest on the tiny config.
# - counts: (as is, with two MoWE layers per stack, and dense) mowe_bench_step and
#   tests/bench/t5_torch_baseline.py must agree on the model's parameter count, on the model FLOPs
#   of every batch (counted independently by each), and on the loss of the same initial weights
#   on the same first batch.
# - training: both train 3 steps from the same initial weights on the same batches, the baseline
#   at 1 rank and at 2 (experts sharded, tokens exchanged), and every parameter must agree with
#   the trainer's: the same maths, not only the same start (see train_check).
# Exit 77 (skipped) without torch.
#   bench_check.sh counts|training BIN_DIR SOURCE_DIR TEST_DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
mode=$1 bin=$2 src=$3 data=$4
shift 4
python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "skipped: $python has no torch (python3-torch)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
baseline=$src/tests/bench/t5_torch_baseline.py

# mowe_bench_step on the tiny config with the variant's settings: bench NP ARGS...
bench() {
  local np=$1
  shift
  "${mpi[@]}" -np "$np" "$bin/mowe_bench_step" --config "$src/configs/tiny.textproto" \
    --set "data.tokenizer_model=$data/spm.model" --set "data.routing_vocab=$data/vocab.pb" \
    --set "training.checkpoint_dir=$tmp/ck" "${variant[@]}" --threads 1 "$@"
}

check() {
  local name=$1
  bench 1 --warmup 0 --steps 3 --dump-batches "$tmp/$name.batches" \
    --dump-weights "$tmp/$name.weights" > "$tmp/$name.ours"
  "$python" "$baseline" --batches "$tmp/$name.batches" --check \
    --weights "$tmp/$name.weights" > "$tmp/$name.torch"
  "$python" - "$name" "$tmp/$name.ours" "$tmp/$name.torch" <<'EOF'
import json, sys
name, ours_log, torch_log = sys.argv[1:]
ours = json.loads(next(l for l in open(ours_log) if l.startswith("BENCH_STEP "))[11:])
torch = json.loads(next(l for l in open(torch_log) if l.startswith("CHECK "))[6:])
failures = []
if ours["params"] != torch["params"]:
    failures.append(f"parameters: ours {ours['params']}, torch {torch['params']}")
if torch["flops"] != [int(f) for f in torch["trainer_flops"]]:
    failures.append(f"model FLOPs per batch: ours {torch['trainer_flops']}, torch {torch['flops']}")
if abs(ours["first_loss"] - torch["loss"]) > 1e-4 * abs(ours["first_loss"]):
    failures.append(f"loss of the initial weights on batch 1: ours {ours['first_loss']}, "
                    f"torch {torch['loss']}")
for f in failures:
    print(f"{name}: {f}")
if failures:
    sys.exit(1)
print(f"{name}: {ours['params']} parameters, FLOPs {torch['flops']}, loss {ours['first_loss']:.6f} "
      f"(torch {torch['loss']:.6f}): agree")
EOF
}

# Three AdamW steps of both from the same initial weights on the same batches. The optimizer
# settings make every part of the update matter at the tolerance: weight decay 0.1 (lr * wd * p
# is about 1e-4 of an update), adam_eps 1e-3 (about the gradients' size, so m / (sqrt(v) + eps)
# depends on eps, on the bias correction of v and on the clipping factor; it also keeps
# gradients that are zero up to rounding from becoming full-size steps of either sign), and
# clipping at norm 0.5, below the tiny model's gradient norm. Per tensor the test compares
# max |trainer - baseline| with max |trainer's change over the 3 steps|: at 1e-3 of the change
# (about 1e-6 of the weights) it passes with f32 rounding between two implementations (the
# gradients differ in their summation order) and fails with eps or weight decay off by 10%.
train_check() {
  local name=$1 tolerance=1e-3
  local opt=(--set training.weight_decay=0.1 --set training.adam_eps=1e-3
    --set training.grad_clip_norm=0.5)
  bench 1 "${opt[@]}" --warmup 0 --steps 3 --dump-batches "$tmp/$name.batches" \
    --dump-weights "$tmp/$name.w0" --dump-final-weights "$tmp/$name.w3" > "$tmp/$name.ours"
  # The same batches at 2 ranks, dumped with the 2-rank expert placement.
  bench 2 "${opt[@]}" --warmup 0 --steps 3 --dump-batches "$tmp/$name.batches2" \
    > "$tmp/$name.ours2"
  local np batches
  for np in 1 2; do
    batches=$tmp/$name.batches
    [ "$np" -eq 1 ] || batches=$tmp/$name.batches2
    "${mpi[@]}" -np "$np" -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=$((29500 + RANDOM % 500)) \
      "$python" "$baseline" --batches "$batches" --warmup 0 --steps 3 --threads 1 \
      --weights "$tmp/$name.w0" --compare-weights "$tmp/$name.w3" > "$tmp/$name.torch$np"
    "$python" - "$name, torch at $np rank(s)" "$tmp/$name.w3" "$tmp/$name.torch$np" \
      "$tolerance" <<'EOF'
import json, struct, sys
name, final, log, tolerance = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
with open(final, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    trainer = set(json.loads(f.read(n))) - {"__metadata__"}
result = json.loads(next(l for l in open(log) if l.startswith("PARAMS "))[7:])
failures = []
if set(result) != trainer:
    failures.append(f"compared {sorted(result)}, the trainer has {sorted(trainer)}")
worst = (0.0, "")
for tensor, (diff, change) in sorted(result.items()):
    if change == 0:
        failures += [f"{tensor}: the trainer's 3 steps left it unchanged"]
        continue
    worst = max(worst, (diff / change, tensor))
    if diff > tolerance * change:
        failures.append(f"{tensor}: max |trainer - torch| {diff:.3e} is {diff / change:.2e} of "
                        f"the largest change {change:.3e} (tolerance {tolerance})")
for f in failures:
    print(f"{name}: {f}")
if failures:
    sys.exit(1)
print(f"{name}: {len(result)} parameters after 3 AdamW steps agree with the trainer's, worst "
      f"{worst[1]} at {worst[0]:.2e} of its change (tolerance {tolerance})")
EOF
  done
}

mpi=("$@")
variant=()
case "$mode" in
  counts)
    check tiny
    variant=(--set "model.mowe.encoder_layers=[0,1]" --set "model.mowe.decoder_layers=[0,1]")
    check tiny_two_mowe_layers
    variant=(--set "model.mowe.encoder_layers=[]" --set "model.mowe.decoder_layers=[]")
    check tiny_dense
    ;;
  training) train_check tiny_trained ;;
  *) echo "bench_check.sh: mode $mode is neither counts nor training" >&2; exit 2 ;;
esac
