// The SYNTHETIC corpus (data.corpus SYNTHETIC): examples with the shape and the expert load of
// real pre-training but no language in them, so that a 1M-routing-id model can be benchmarked and
// sized without a corpus, WordNet or a SentencePiece run. For benchmarks and capacity planning
// only: nothing learnable is in the data.
//
// - The vocabulary is data.sp_vocab_size synthetic ids laid out as a trained tokenizer's: pad 0,
//   EOS 1, unk 2, the sentinels <extra_id_k> at 3.., then the ordinary ids (Tokenizer::synthetic).
// - Example g's raw tokens are ordinary ids drawn from a Zipf law (rank 1 = the first ordinary
//   id), then span-corrupted exactly as text is.
// - Every encoder and decoder input position gets a routing id drawn from a Zipf law over
//   [0, model.mowe.routing_vocab_size) (rank 1 = id 0), independent of its token: the load on
//   each expert follows the frequencies the routing vocabulary records, which are this law's
//   expected counts (synthetic_routing_vocab), so mowe_plan buckets ids as for real data.
// - Every draw is hash(data.seed, split, g, stream, position): example g is a pure function of
//   (seed, g), whatever the world size, rank or resume point.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "data/routing_vocab.h"
#include "data/tokenizer.h"
#include "runtime/proto/config.pb.h"

namespace mowe::data {

// Id k of [0, n) has probability proportional to 1/(k + 1)^exponent. Draws invert the
// cumulative distribution (one binary search), so any n up to 2^31 costs n doubles and no setup
// beyond one pass.
class ZipfLaw {
 public:
  ZipfLaw(int64_t n, double exponent);
  int64_t size() const { return static_cast<int64_t>(cdf_.size()); }
  double exponent() const { return exponent_; }
  double probability(int64_t id) const;
  // The id whose cumulative interval holds u, for u uniform in [0, 1).
  int32_t draw(double u) const;

 private:
  std::vector<double> cdf_;  // cdf_[k] = P(id <= k); the last is exactly 1
  double exponent_;
};

// round(total * P(id)) for every id: the expected counts in `total` draws.
std::vector<int64_t> zipf_expected_counts(const ZipfLaw& law, double total);

// Routing tokens the expected counts of a synthetic routing vocabulary are given for: large
// enough that the 1M-th id of a Zipf(1) law still counts about 66,000, so frequency order is id
// order even after rounding.
inline constexpr double kSyntheticFrequencyTokens = 1e12;

// The synthetic vocabulary of a DataConfig (sp_vocab_size ids, num_sentinels sentinels).
Tokenizer synthetic_tokenizer(const config::DataConfig& config);

// The routing vocabulary of a SYNTHETIC config: no words, routing ids
// [0, model.mowe.routing_vocab_size), frequencies the routing Zipf law's expected counts in
// kSyntheticFrequencyTokens tokens. Seconds and about 30 bytes per routing id for 1M ids.
RoutingVocab synthetic_routing_vocab(const config::Config& config, const Tokenizer& tokenizer);

// Empty, or why `vocab` cannot serve `config` (a text corpus's vocabulary, or one built for
// another routing vocabulary size or exponent), with the mowe_vocab command that rebuilds it.
std::string synthetic_vocab_mismatch(const config::Config& config, const RoutingVocab& vocab,
                                     const std::string& path);

// The examples of one split: train and validation draw from different seeds.
class SyntheticExamples {
 public:
  enum class Split { kTrain, kValidation };
  SyntheticExamples(const config::Config& config, Split split);

  // The raw (pre-corruption) tokens of example g: `length` ordinary ids.
  void tokens(int64_t g, int64_t length, std::vector<int32_t>* out) const;
  // The routing ids of `n` positions of example g's encoder (stream 0) or decoder (1) inputs.
  void routing_ids(int64_t g, int stream, int64_t n, int32_t* out) const;
  // Fingerprint of everything the examples depend on, recorded in saved loader states.
  uint64_t hash() const { return hash_; }
  int32_t first_ordinary_id() const { return first_ordinary_; }
  const ZipfLaw& token_law() const { return *token_law_; }
  const ZipfLaw& routing_law() const { return *routing_law_; }

 private:
  std::shared_ptr<const ZipfLaw> token_law_, routing_law_;
  int32_t first_ordinary_ = 0;
  uint64_t seed_ = 0;  // data.seed mixed with the split
  uint64_t hash_ = 0;
};

}  // namespace mowe::data
