#!/usr/bin/env bash
# Keeps the PyTorch baseline honest: on the tiny config (as is, with two MoWE layers per stack,
# and dense) mowe_bench_step and tests/bench/t5_torch_baseline.py must agree on the model's
# parameter count, on the model FLOPs of every batch (counted independently by each), and on the
# loss of the same initial weights on the same first batch. Exit 77 (skipped) without torch.
#   bench_check.sh BIN_DIR SOURCE_DIR TEST_DATA_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2 data=$3
shift 3
python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "skipped: $python has no torch (python3-torch)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() {
  local name=$1
  shift
  "$@" -np 1 "$bin/mowe_bench_step" --config "$src/configs/tiny.textproto" \
    --set "data.tokenizer_model=$data/spm.model" --set "data.routing_vocab=$data/vocab.pb" \
    --set "training.checkpoint_dir=$tmp/ck" "${variant[@]}" --warmup 0 --steps 3 \
    --dump-batches "$tmp/$name.batches" --dump-weights "$tmp/$name.weights" > "$tmp/$name.ours"
  "$python" "$src/tests/bench/t5_torch_baseline.py" --batches "$tmp/$name.batches" --check \
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

variant=()
check tiny "$@"
variant=(--set "model.mowe.encoder_layers=[0,1]" --set "model.mowe.decoder_layers=[0,1]")
check tiny_two_mowe_layers "$@"
variant=(--set "model.mowe.encoder_layers=[]" --set "model.mowe.decoder_layers=[]")
check tiny_dense "$@"
