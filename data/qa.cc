#include "data/qa.h"

#include <cctype>

#include "data/token_stream.h"
#include "runtime/check.h"
#include "runtime/hash.h"

namespace mowe::data {

size_t gloss_head_length(std::string_view gloss, int max_words) {
  const auto word_byte = [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || c == '-' || c == '\'' || u >= 0x80;
  };
  size_t end = 0;
  int count = 0;
  while (end < gloss.size() && count < max_words) {
    size_t at = end;
    while (at < gloss.size() && gloss[at] == ' ') ++at;
    const size_t start = at;
    while (at < gloss.size() && word_byte(gloss[at])) ++at;
    if (at == start) break;  // punctuation: the head ends
    end = at;
    ++count;
  }
  return end;
}

QaPair wordnet_question(const Synset& synset) {
  QaPair pair;
  const std::string lemma = synset.lemmas.empty() ? std::string() : synset.lemmas[0];
  const bool vowel =
      !lemma.empty() && std::string_view("aeiouAEIOU").find(lemma[0]) != std::string_view::npos;
  pair.question = fmt::format("what is {} {}?", vowel ? "an" : "a", lemma);
  pair.answer = synset.gloss.substr(0, gloss_head_length(synset.gloss));
  return pair;
}

QaSplit wordnet_qa(const std::vector<Synset>& synsets, double validation_fraction, uint64_t seed) {
  QaSplit split;
  for (const Synset& s : synsets) {
    QaPair pair = wordnet_question(s);
    if (pair.answer.empty() || s.lemmas.empty()) continue;
    // The same decision split_corpus takes for this synset's document in pre-training.
    const bool held_out =
        split_corpus({synset_document(s)}, validation_fraction, seed).train.empty();
    (held_out ? split.validation : split.train).push_back(std::move(pair));
  }
  return split;
}

QaExamples::QaExamples(std::vector<std::vector<int32_t>> inputs,
                       std::vector<std::vector<int32_t>> targets, uint64_t seed)
    : inputs_(std::move(inputs)), targets_(std::move(targets)), seed_(seed) {
  MOWE_CHECK(inputs_.size() == targets_.size(), "{} questions but {} answers", inputs_.size(),
             targets_.size());
  // A tag of its own, so that no token stream's hash equals a question set's.
  uint64_t h = hash_ints(seed, 0x9a5e7, inputs_.size());
  for (size_t i = 0; i < inputs_.size(); ++i) {
    for (const auto* ids : {&inputs_[i], &targets_[i]}) {
      h = hash_ints(h, ids->size());
      h = fnv1a_tokens(ids->data(), ids->size(), h);
    }
  }
  hash_ = mix64(h);
}

int64_t QaExamples::pair_of(int64_t example) const {
  const int64_t n = size();
  MOWE_CHECK(n > 0 && example >= 0, "example {} of {} question-answer pairs", example, n);
  const uint64_t epoch = static_cast<uint64_t>(example / n);
  return static_cast<int64_t>(permute_index(example % n, n, hash_ints(seed_, 0x9a0e, epoch)));
}

QaExamples tokenize_qa(const std::vector<QaPair>& pairs, const Tokenizer& tokenizer,
                       uint64_t seed) {
  std::vector<std::vector<int32_t>> inputs, targets;
  inputs.reserve(pairs.size());
  targets.reserve(pairs.size());
  for (const QaPair& p : pairs) {
    inputs.push_back(tokenizer.encode(p.question));
    targets.push_back(tokenizer.encode(p.answer));
  }
  return QaExamples(std::move(inputs), std::move(targets), seed);
}

}  // namespace mowe::data
