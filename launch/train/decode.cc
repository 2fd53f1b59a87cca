#include "launch/train/decode.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <string_view>

#include "data/batch.h"
#include "data/corpus.h"
#include "data/qa.h"
#include "runtime/device.h"
#include "runtime/hash.h"

namespace mowe::train {
namespace {

// T5's sentinels and SentencePiece's special pieces as decode() writes them: markup, not words.
// Returns the length of the one starting at text[i], 0 when none does.
size_t special_token_at(const std::string& text, size_t i) {
  static constexpr std::string_view kSpecials[] = {"<pad>", "</s>", "<s>", "<unk>",
                                                   "\xe2\x81\x87"};  // U+2047, unk's surface
  const std::string_view rest = std::string_view(text).substr(i);
  for (std::string_view s : kSpecials)
    if (rest.substr(0, s.size()) == s) return s.size();
  constexpr std::string_view kSentinel = "<extra_id_";
  if (rest.substr(0, kSentinel.size()) != kSentinel) return 0;
  size_t end = kSentinel.size();
  while (end < rest.size() && std::isdigit(static_cast<unsigned char>(rest[end]))) ++end;
  return end > kSentinel.size() && end < rest.size() && rest[end] == '>' ? end + 1 : 0;
}

// The SQuAD v1.1 normalisation (normalize_answer of the official evaluation script), after the
// special tokens are removed: lower case, ASCII punctuation deleted (not split on: "don't" is
// "dont"), the articles a/an/the dropped, the rest split on whitespace. Bytes above 0x7f count
// as letters, so an article is always a whole word here.
std::vector<std::string> answer_words(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  const auto end_word = [&] {
    if (!cur.empty() && cur != "a" && cur != "an" && cur != "the") out.push_back(cur);
    cur.clear();
  };
  for (size_t i = 0; i < text.size();) {
    if (const size_t n = special_token_at(text, i)) {
      end_word();
      i += n;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(text[i++]);
    if (c < 0x80 && std::isspace(c)) {
      end_word();
    } else if (c >= 0x80 || !std::ispunct(c)) {
      cur += static_cast<char>(std::tolower(c));
    }
  }
  end_word();
  return out;
}

}  // namespace

std::vector<std::vector<int32_t>> greedy_decode(StepRunner& runner, Job& job,
                                                const std::vector<DecodeRequest>& requests,
                                                int max_tokens, bool stop_at_sentinel, int batch) {
  comm::Communicator& comm = job.comm();
  const data::Tokenizer& tok = *job.data().tokenizer;
  const data::RoutingTokenizer& table = *job.data().table;
  const int world = comm.size(), rank = comm.rank();
  const int64_t n = static_cast<int64_t>(requests.size());
  // Every rank runs the same number of forward passes (they are collective): the requests are
  // dealt in equal shares, the last ones padded with request 0 and ignored.
  const int64_t per_rank = (n + world - 1) / world;
  const int64_t rounds = (per_rank + batch - 1) / batch;
  std::vector<std::vector<int32_t>> out(n);
  for (int64_t round = 0; round < rounds; ++round) {
    std::vector<int64_t> mine;  // indices into requests; -1: padding
    for (int64_t k = 0; k < batch; ++k) {
      const int64_t local = round * batch + k, global = rank * per_rank + local;
      if (local < per_rank) mine.push_back(global < n ? global : -1);
    }
    // Fixed shapes within the round: every rank must agree on B (global batch = B * world).
    const int B = batch;
    while (static_cast<int>(mine.size()) < B) mine.push_back(-1);
    int T = 2;
    size_t forced = 0;
    for (const DecodeRequest& r : requests) {
      T = std::max<int>(T, static_cast<int>(r.inputs.size()));
      forced = std::max(forced, r.forced.size());
    }
    const int D = static_cast<int>(1 + forced + max_tokens);
    data::Batch b;
    b.first_example = rank * per_rank + round * batch;
    data::shape_batch(B, T, D, &b);
    // Row i as an example: the request's inputs, the prefix written so far as decoder inputs,
    // and one target (the loss is not used, but it must have one).
    std::vector<data::Example> rows(B);
    std::vector<bool> done(B, false);
    for (int i = 0; i < B; ++i) {
      const DecodeRequest& r = requests[mine[i] < 0 ? 0 : mine[i]];
      data::Example& ex = rows[i];
      ex.inputs = r.inputs;
      ex.decoder_inputs.push_back(data::Tokenizer::kPadId);
      ex.decoder_inputs.insert(ex.decoder_inputs.end(), r.forced.begin(), r.forced.end());
      ex.targets = {data::Tokenizer::kPadId};
      if (mine[i] < 0) done[i] = true;
    }
    // One forward pass per generated position over the whole prefix (no key/value cache: the
    // sequences here are short, and this reuses the training forward exactly).
    std::vector<float> host_logits;
    for (int step = 0; step < max_tokens; ++step) {
      for (int i = 0; i < B; ++i) {
        data::route_example(table, &rows[i]);
        data::put_example(rows[i], i, data::Tokenizer::kPadId, &b);
      }
      double targets = 0;
      runner.loss_sum(b, &targets, [&](const Tensor& logits) {
        const int64_t V = logits.dim(1);
        // Device logits come to the host once per decoding step.
        const float* all = logits.ptr<float>();
        if (logits.device != Device::CPU) {
          host_logits.resize(static_cast<size_t>(logits.numel()));
          download(host_logits.data(), logits);
          all = host_logits.data();
        }
        for (int i = 0; i < B; ++i) {
          if (done[i]) continue;
          const std::vector<int32_t>& prefix = rows[i].decoder_inputs;
          const float* row = all + (int64_t(i) * D + prefix.size() - 1) * V;
          const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
          if (next == data::Tokenizer::kEosId || (stop_at_sentinel && tok.is_sentinel(next))) {
            done[i] = true;
          } else {
            rows[i].decoder_inputs.push_back(next);
          }
        }
      });
    }
    for (int i = 0; i < B; ++i) {
      if (mine[i] < 0) continue;
      const size_t skip = 1 + requests[mine[i]].forced.size();
      const std::vector<int32_t>& prefix = rows[i].decoder_inputs;
      out[mine[i]].assign(prefix.begin() + skip, prefix.end());
    }
  }
  // Every rank gets every result: lengths, then tokens, summed (each slot is filled by one rank).
  std::vector<int32_t> lengths(n, 0);
  for (int64_t i = 0; i < n; ++i) lengths[i] = static_cast<int32_t>(out[i].size());
  if (n > 0)
    comm.allreduce(Tensor(lengths.data(), DType::I32, Device::CPU, {n}), comm::ReduceOp::Sum);
  std::vector<int64_t> offset(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) offset[i + 1] = offset[i] + lengths[i];
  std::vector<int32_t> flat(std::max<int64_t>(offset[n], 1), 0);
  for (int64_t i = 0; i < n; ++i) std::copy(out[i].begin(), out[i].end(), flat.begin() + offset[i]);
  comm.allreduce(Tensor(flat.data(), DType::I32, Device::CPU, {int64_t(flat.size())}),
                 comm::ReduceOp::Sum);
  for (int64_t i = 0; i < n; ++i)
    out[i].assign(flat.begin() + offset[i], flat.begin() + offset[i + 1]);
  return out;
}

std::vector<ProbeItem> wordnet_probe(const config::Config& config, const data::Tokenizer& tok,
                                     int64_t limit, uint64_t seed) {
  const auto& d = config.data();
  struct Candidate {
    uint64_t key;
    std::string doc, gloss, lemma;
  };
  std::vector<Candidate> candidates;
  for (const data::Synset& s : data::read_wordnet(d.wordnet_dir())) {
    std::string doc = data::synset_document(s);
    // Only synsets the model saw in pre-training.
    if (data::split_corpus({doc}, d.validation_fraction(), uint64_t(d.seed())).train.empty())
      continue;
    const uint64_t key = hash_bytes(doc, seed);
    candidates.push_back({key, std::move(doc), s.gloss, s.lemmas.empty() ? "" : s.lemmas[0]});
  }
  // A fixed pseudo-random order, so --probe N takes the same N questions on every run.
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.key < b.key; });
  std::vector<ProbeItem> items;
  for (const Candidate& c : candidates) {
    if (static_cast<int64_t>(items.size()) >= limit) break;
    const std::string& gloss = c.gloss;
    const size_t end = data::gloss_head_length(gloss);
    const std::string head = gloss.substr(0, end);
    if (end == 0 || end >= gloss.size()) continue;  // no head, or nothing left to give context
    const size_t at = c.doc.rfind(gloss);
    if (at == std::string::npos) continue;
    ProbeItem item;
    item.lemma = c.lemma;
    item.answer = head;
    const std::string before = c.doc.substr(0, at), after = c.doc.substr(at + head.size());
    item.masked = before + "<extra_id_0>" + after;
    // The sentinel must survive the cut at input_length: the context after it is cut first, and
    // a synset whose lemmas alone leave no room is skipped.
    std::vector<int32_t> head_ids = tok.encode(before), tail_ids = tok.encode(after);
    const int64_t room = d.input_length() - 2 - static_cast<int64_t>(head_ids.size());
    if (room < 0) continue;
    if (static_cast<int64_t>(tail_ids.size()) > room) tail_ids.resize(room);
    std::vector<int32_t>& in = item.request.inputs;
    in = std::move(head_ids);
    in.push_back(tok.sentinel(0));
    in.insert(in.end(), tail_ids.begin(), tail_ids.end());
    in.push_back(data::Tokenizer::kEosId);
    item.request.forced = {tok.sentinel(0)};
    items.push_back(std::move(item));
  }
  return items;
}

AnswerScore score_answer(const std::string& predicted, const std::string& truth) {
  const std::vector<std::string> p = answer_words(predicted), t = answer_words(truth);
  AnswerScore s;
  s.exact = p == t ? 1 : 0;
  // As the official script: no word in common (two empty answers included) is an F1 of 0.
  std::map<std::string, int> counts;
  for (const auto& w : t) ++counts[w];
  int common = 0;
  for (const auto& w : p)
    if (counts[w]-- > 0) ++common;
  if (common == 0) return s;
  const double precision = double(common) / p.size(), recall = double(common) / t.size();
  s.f1 = 2 * precision * recall / (precision + recall);
  return s;
}

}  // namespace mowe::train
