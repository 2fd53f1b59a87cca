#!/usr/bin/env bash
# Training from a directory of compressed JSON-lines shards, streamed (data.streaming), on the
# tiny model: mowe_vocab builds the tokenizer and routing vocabulary from the plain shards,
# mowe_pretrain trains 6 steps from the plain shards and from gzip/zstd copies of them with
# exactly the same losses and gradient norms (so the same batches); 2 ranks log the losses of 1;
# a run stopped at step 3 and resumed from its checkpoint at 2 ranks reproduces the
# uninterrupted run exactly, and at 1 rank to the logged digits. Held-out documents come from
# their own file (data.validation_path).
#   streaming_e2e.sh BIN_DIR SOURCE_DIR MPIEXEC [MPIEXEC_FLAGS...]
set -euo pipefail
bin=$1 src=$2
shift 2
mpiexec=("$@")
work=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT; echo "work: $work"
fail() { echo "FAIL: $*"; exit 1; }

# 5 shards of WordNet glosses (every 5th synset), and a validation file of others.
mkdir -p "$work/plain" "$work/packed"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
glosses = []
for pos in ("noun", "verb", "adj", "adv"):
    with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  ") or "|" not in line:
                continue
            glosses.append(line.split("|", 1)[1].strip())
shards = [open(f"{work}/plain/shard{k}.jsonl", "w") for k in range(5)]
with open(f"{work}/validation.jsonl", "w") as val:
    for i, g in enumerate(glosses):
        if i % 5 == 0:
            shards[(i // 5) % 5].write(json.dumps({"id": i, "text": g}) + "\n")
        elif i % 97 == 1:
            val.write(json.dumps({"text": g}) + "\n")
PY
for k in 0 1 2 3 4; do
  if (( k % 2 )); then zstd -q -c "$work/plain/shard$k.jsonl" > "$work/packed/shard$k.jsonl.zst"
  else gzip -c "$work/plain/shard$k.jsonl" > "$work/packed/shard$k.jsonl.gz"; fi
done

common=(--config "$src/configs/tiny.textproto" --set data.corpus=JSONL
        --set "data.validation_path=$work/validation.jsonl"
        --set "data.tokenizer_model=$work/spm.model" --set "data.routing_vocab=$work/vocab.pb"
        --set training.log_every=1 --set training.eval_every=3 --set training.checkpoint_every=3)
# mowe_vocab on a sample, as for a corpus larger than memory: the first 4,000 documents of each shard.
"$bin/mowe_vocab" "${common[@]}" --set "data.corpus_path=$work/plain" --max-documents 20000 \
  > "$work/vocab.log" 2>&1 || { cat "$work/vocab.log"; fail "mowe_vocab"; }
grep -q "a sample of 5 JSON-lines files of $work/plain (field \"text\"): 20000 documents" "$work/vocab.log" ||
  { cat "$work/vocab.log"; fail "mowe_vocab did not sample 20000 documents"; }
for np in 1 2; do
  "$bin/mowe_plan" "${common[@]}" --set "data.corpus_path=$work/plain" --world-size $np \
    --out "$work/plan$np.pb" > "$work/plan$np.log" 2>&1 || { cat "$work/plan$np.log"; fail "mowe_plan"; }
done

train() {  # name, ranks, corpus directory, args...
  local name=$1 np=$2 corpus=$3
  shift 3
  "${mpiexec[@]}" -np "$np" "$bin/mowe_pretrain" "${common[@]}" --set data.streaming=true \
    --set data.stream_shards=3 --set "data.corpus_path=$corpus" \
    --set "parallel.plan=$work/plan$np.pb" --set "training.checkpoint_dir=$work/runs/$name/checkpoints" \
    "$@" > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; fail "training run $name"; }
}
# shellcheck source=../util/run_logs.sh
source "$src/tests/util/run_logs.sh"
exact() { exact_metrics "$work/runs/$1/checkpoints/metrics.jsonl" "$2"; }  # a run's scalars from step $2 on

train plain 1 "$work/plain" --set training.steps=6
grep -q "streaming 5 files of $work/plain in 3 streams" "$work/plain.log" ||
  { cat "$work/plain.log"; fail "not streamed"; }
[ "$(exact plain 1 | wc -l)" = 6 ] || { cat "$work/plain.log"; fail "not 6 steps"; }
grep -q "validation loss" "$work/plain.log" || fail "no evaluation on data.validation_path"

train packed 1 "$work/packed" --set training.steps=6
diff <(exact plain 1) <(exact packed 1) || fail "compressed shards train differently from plain ones"

train two_ranks 2 "$work/packed" --set training.steps=6
diff <(losses "$work/plain.log" 1) <(losses "$work/two_ranks.log" 1) || fail "2 ranks differ from 1"

train stopped 2 "$work/packed" --set training.steps=3
mkdir -p "$work/runs/resumed" && cp -r "$work/runs/stopped/checkpoints" "$work/runs/resumed/"
train resumed 2 "$work/packed" --set training.steps=6 --resume auto
grep -q -E "resumed from .* at step 3" "$work/resumed.log" || { cat "$work/resumed.log"; fail "did not resume at step 3"; }
diff <(exact two_ranks 4) <(exact resumed 4) || fail "the resumed run differs from the uninterrupted one"
# The 2-rank checkpoint resumed by 1 rank: every stream's position is in it.
mkdir -p "$work/runs/one_rank" && cp -r "$work/runs/stopped/checkpoints" "$work/runs/one_rank/"
train one_rank 1 "$work/packed" --set training.steps=6 --resume auto
diff <(losses "$work/two_ranks.log" 4) <(losses "$work/one_rank.log" 4) ||
  fail "1 rank resuming the 2-rank checkpoint differs"
echo "streaming: plain and compressed shards train identically, 2 ranks as 1, resume exact:"
exact packed 1
