// Greedy decoding with a trained model, and the closed-book knowledge probe built from WordNet:
// what mowe_eval measures beyond the validation loss.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "launch/train/job.h"
#include "launch/train/step.h"

namespace mowe::train {

// One sequence to continue: the encoder's tokens (EOS included) and the decoder tokens forced
// after the start token (e.g. <extra_id_0> for a sentinel span).
struct DecodeRequest {
  std::vector<int32_t> inputs;
  std::vector<int32_t> forced;
};

// Greedy continuations of every request: the tokens the model writes after `forced`, up to
// max_tokens, stopping at EOS or (stop_at_sentinel) at any sentinel, neither included. Every rank
// passes the same requests and gets all results; each computes its share of them in batches of
// `batch` sequences. Collective.
std::vector<std::vector<int32_t>> greedy_decode(StepRunner& runner, Job& job,
                                                const std::vector<DecodeRequest>& requests,
                                                int max_tokens, bool stop_at_sentinel, int batch);

// A knowledge probe question: a WordNet document of the training split with the head of its
// gloss (its first words, up to the first punctuation mark, at most 3) replaced by <extra_id_0>,
// and the hidden words as the answer.
struct ProbeItem {
  std::string lemma;   // the synset's first lemma, for reports
  std::string masked;  // the document as the model sees it, for reports
  DecodeRequest request;
  std::string answer;
};

// Up to `limit` probe items from the synsets whose documents went to the training split
// (data.validation_fraction, data.seed), in a fixed pseudo-random order (seed), inputs cut at
// data.input_length.
std::vector<ProbeItem> wordnet_probe(const config::Config& config, const data::Tokenizer& tokenizer,
                                     int64_t limit, uint64_t seed);

// Answer scores as the official SQuAD v1.1 script computes them, after T5's sentinels
// (<extra_id_N>) and the special pieces (<pad>, </s>, <unk>) are removed: both texts lower-cased,
// punctuation and the articles a/an/the removed, split on whitespace; exact match of the word
// sequences and the F1 of their bags of words. Two empty answers match exactly with an F1 of 0,
// as in that script; an empty answer against a non-empty one scores 0 on both.
struct AnswerScore {
  double exact = 0, f1 = 0;
};
AnswerScore score_answer(const std::string& predicted, const std::string& truth);

}  // namespace mowe::train
