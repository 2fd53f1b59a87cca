#!/usr/bin/env bash
# The knowledge experiment on WordNet, end to end on 2 ranks: pre-train the wordnet_small MoWE
# model and a dense T5 of the same shape without MoWE layers (every block a dense d_ff 256 FFN,
# so at least the MoWE model's FLOPs per token: its MoWE blocks run one expert of d_ff 4..128);
# probe both with mowe_eval (WordNet glosses seen in pre-training, their head words masked), the
# MoWE model also with the experts of auxiliary words switched off; fine-tune both on the WordNet
# questions ("what is a <lemma>?" -> the gloss head; MoWE experts frozen) and score the held-out
# questions. Prints one table and writes it to RUN/table.md.
#   launch/experiments/wordnet_knowledge.sh [RUN_DIR]   (default runs/experiment_wordnet)
# Environment: STEPS (pre-training steps, default 300), FT_STEPS (default 300), MOWE_RANKS (2).
# Run again on the same RUN_DIR, the training runs continue from their checkpoints (--resume
# auto: nothing to do when complete); use a new RUN_DIR to start over.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-runs/experiment_wordnet}
steps=${STEPS:-300}
ft_steps=${FT_STEPS:-300}
ranks=${MOWE_RANKS:-2}
pre=configs/wordnet_small.textproto
ft=configs/wordnet_finetune.textproto
mpi=(mpirun -np "$ranks" --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
dense=(--set 'model.mowe.encoder_layers=[]' --set 'model.mowe.decoder_layers=[]'
       --set parallel.plan=)

launch/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)" --target mowe_vocab mowe_plan mowe_pretrain mowe_eval
if [ ! -f runs/wordnet_small/routing_vocab.pb ] || [ ! -f runs/wordnet_small/spm.model ] ||
   ! build/bin/mowe_plan --config "$pre" --world-size "$ranks" > /dev/null 2>&1; then
  build/bin/mowe_vocab --config "$pre"
  build/bin/mowe_plan --config "$pre" --world-size "$ranks"
fi
mkdir -p "$out"

run() {  # name, log, command...
  local name=$1 log=$2
  shift 2
  echo "[experiment] $name"
  "$@" > "$log" 2>&1 || { tail -20 "$log"; echo "[experiment] $name failed: $log" >&2; exit 1; }
}

for model in mowe dense; do
  extra=()
  [ "$model" = dense ] && extra=("${dense[@]}")
  run "pre-train $model ($steps steps)" "$out/$model.pretrain.log" \
    "${mpi[@]}" build/bin/mowe_pretrain --config "$pre" "${extra[@]}" \
    --set training.steps="$steps" --set training.checkpoint_dir="$out/$model/checkpoints" \
    --resume auto \
    --set training.run_dir="$out/$model"
  latest=$(ls -d "$out/$model/checkpoints"/step-* | grep -E "/step-[0-9]+$" | sort | tail -1)
  run "probe $model" "$out/$model.probe.log" \
    "${mpi[@]}" build/bin/mowe_eval --config "$pre" "${extra[@]}" --checkpoint "$latest" \
    --decode 0 --probe 500 --json "$out/$model.probe.json"
  if [ "$model" = mowe ]; then
    run "probe mowe without auxiliary-word experts" "$out/mowe_noaux.probe.log" \
      "${mpi[@]}" build/bin/mowe_eval --config "$pre" --checkpoint "$latest" \
      --deactivate-auxiliary --decode 0 --probe 500 --json "$out/mowe_noaux.probe.json"
  fi
  run "fine-tune $model ($ft_steps steps)" "$out/$model.finetune.log" \
    "${mpi[@]}" build/bin/mowe_pretrain --config "$ft" "${extra[@]}" \
    --set training.steps="$ft_steps" --set training.init_from="$out/$model/checkpoints" \
    --set training.checkpoint_dir="$out/$model-ft/checkpoints" --set training.run_dir="$out/$model-ft" \
    --resume auto
  ft_latest=$(ls -d "$out/$model-ft/checkpoints"/step-* | grep -E "/step-[0-9]+$" | sort | tail -1)
  run "answer held-out questions ($model)" "$out/$model.qa.log" \
    "${mpi[@]}" build/bin/mowe_eval --config "$ft" "${extra[@]}" --checkpoint "$ft_latest" \
    --probe 0 --decode 500 --json "$out/$model.qa.json"
  if [ "$model" = mowe ]; then
    run "answer held-out questions (mowe without auxiliary-word experts)" "$out/mowe_noaux.qa.log" \
      "${mpi[@]}" build/bin/mowe_eval --config "$ft" --checkpoint "$ft_latest" \
      --deactivate-auxiliary --probe 0 --decode 500 --json "$out/mowe_noaux.qa.json"
  fi
done

python3 - "$out" "$steps" "$ft_steps" <<'PY' | tee "$out/table.md"
import json, sys
out, steps, ft_steps = sys.argv[1:4]
def load(name):
    with open(f"{out}/{name}.json") as f:
        return json.loads(f.read())
rows = [("MoWE, all experts", "mowe", "mowe"),
        ("MoWE, auxiliary-word experts off", "mowe_noaux", "mowe_noaux"),
        ("dense T5 (no MoWE layer)", "dense", "dense")]
print("| model | pre-training validation loss | probe EM | probe F1 | QA validation loss | QA EM | QA F1 |")
print("|---|---|---|---|---|---|---|")
for label, probe, qa in rows:
    p, q = load(probe + ".probe"), load(qa + ".qa")
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
    print(f"| {label} | {p['validation_loss']:.3f} | {pct(p['probe_exact_match'])} | "
          f"{pct(p['probe_f1'])} | {q['validation_loss']:.3f} | {pct(q['decode_exact_match'])} | "
          f"{pct(q['decode_f1'])} |")
print(f"\n({steps} pre-training and {ft_steps} fine-tuning steps; probe: "
      f"{load('mowe.probe')['probe_items']} questions, QA: {load('mowe.qa')['decode_examples']} "
      f"held-out questions)")
PY
