// Supervised question-answer examples (data.task = WORDNET_QA): "what is a <lemma>?" answered by
// the head of the synset's gloss. The questions of a synset go to the training or validation
// split with its document (split_corpus on synset_document), so fine-tuning never trains on a
// held-out synset and its validation loss measures held-out ones.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/corpus.h"
#include "data/tokenizer.h"

namespace mowe::data {

// The head of a gloss: its first words (letters, digits, '-', '\'', any non-ASCII byte) up to
// the first punctuation mark, at most `max_words`. Returns its length in bytes: 0 when the gloss
// starts with punctuation. The answer of WORDNET_QA and the hidden span of the knowledge probe.
size_t gloss_head_length(std::string_view gloss, int max_words = 3);

struct QaPair {
  std::string question;  // "what is a dog?"
  std::string answer;    // "a member of"
};

// The question about a synset: its first lemma after "what is a" ("an" before a vowel). An
// empty answer when the gloss has no head.
QaPair wordnet_question(const Synset& synset);

struct QaSplit {
  std::vector<QaPair> train, validation;
};

// One question per synset with a gloss head, in database order, split as split_corpus splits
// the synset documents (validation_fraction, seed).
QaSplit wordnet_qa(const std::vector<Synset>& synsets, double validation_fraction, uint64_t seed);

// Tokenized pairs without EOS (the loader appends it) and the epoch order over them: global
// example g reads pair permute_index(g mod n, n, key of epoch g / n), as TokenStream orders its
// chunks.
class QaExamples {
 public:
  QaExamples(std::vector<std::vector<int32_t>> inputs, std::vector<std::vector<int32_t>> targets,
             uint64_t seed);

  int64_t size() const { return static_cast<int64_t>(inputs_.size()); }
  const std::vector<int32_t>& inputs(int64_t i) const { return inputs_[i]; }
  const std::vector<int32_t>& targets(int64_t i) const { return targets_[i]; }
  // The pair global example `example` reads.
  int64_t pair_of(int64_t example) const;
  // Fingerprint of every token, the pair boundaries and the seed, recorded in loader states.
  uint64_t hash() const { return hash_; }

 private:
  std::vector<std::vector<int32_t>> inputs_, targets_;
  uint64_t seed_;
  uint64_t hash_;
};

QaExamples tokenize_qa(const std::vector<QaPair>& pairs, const Tokenizer& tokenizer, uint64_t seed);

}  // namespace mowe::data
