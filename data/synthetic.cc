#include "data/synthetic.h"

#include <algorithm>
#include <cmath>

#include "runtime/hash.h"
#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

// Salts of the independent draws: which split, and what is drawn.
constexpr uint64_t kTrainSalt = 0x73796e74;  // "synt"
constexpr uint64_t kValidationSalt = 0x76616c69;
constexpr uint64_t kTokenDraw = 0x746f6b;
constexpr uint64_t kRoutingDraw = 0x726f75;

double unit(uint64_t bits) {
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

int32_t ordinary_start(const config::DataConfig& d) {
  return Tokenizer::kUnkId + 1 + d.num_sentinels();
}

}  // namespace

ZipfLaw::ZipfLaw(int64_t n, double exponent) : exponent_(exponent) {
  MOWE_CHECK(n >= 1 && n <= (int64_t{1} << 31) - 1, "a Zipf law over {} ids", n);
  MOWE_CHECK(exponent >= 0, "the Zipf exponent must be >= 0, not {}", exponent);
  cdf_.resize(n);
  double sum = 0;
  for (int64_t k = 0; k < n; ++k) cdf_[k] = sum += std::pow(static_cast<double>(k + 1), -exponent);
  for (double& c : cdf_) c /= sum;
  cdf_.back() = 1.0;  // so that every u < 1 finds an id
}

double ZipfLaw::probability(int64_t id) const {
  return id == 0 ? cdf_[0] : cdf_[id] - cdf_[id - 1];
}

int32_t ZipfLaw::draw(double u) const {
  return static_cast<int32_t>(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
}

std::vector<int64_t> zipf_expected_counts(const ZipfLaw& law, double total) {
  // From the terms themselves, not differences of the cumulative sums, which lose the tail's
  // digits at a million ids.
  const int64_t n = law.size();
  double sum = 0;
  for (int64_t k = 0; k < n; ++k) sum += std::pow(static_cast<double>(k + 1), -law.exponent());
  std::vector<int64_t> counts(n);
  for (int64_t k = 0; k < n; ++k)
    counts[k] = std::llround(total * std::pow(static_cast<double>(k + 1), -law.exponent()) / sum);
  return counts;
}

Tokenizer synthetic_tokenizer(const config::DataConfig& config) {
  return Tokenizer::synthetic(config.sp_vocab_size(), config.num_sentinels());
}

RoutingVocab synthetic_routing_vocab(const config::Config& config, const Tokenizer& tokenizer) {
  const int32_t ids = config.model().mowe().routing_vocab_size();
  const double s = config.data().synthetic_zipf_exponent();
  RoutingVocabFile f;
  f.set_format_version(RoutingVocab::kFormatVersion);
  f.set_tokenizer_hash(tokenizer.hash());
  f.set_tokenizer_path(tokenizer.source());
  f.set_default_vocab_size(tokenizer.vocab_size());
  f.set_case_variants(config.model().mowe().case_variants());
  f.set_tokenizer_bytes(0);
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id)
    f.add_tokenizer_piece_crc32c(
        checkpoint::crc32c(tokenizer.piece(id).data(), tokenizer.piece(id).size()));
  SyntheticRouting* syn = f.mutable_synthetic();
  syn->set_routing_ids(ids);
  syn->set_zipf_exponent(s);
  syn->set_frequency_tokens(kSyntheticFrequencyTokens);
  RoutingVocab vocab = RoutingVocab::from_file(std::move(f));
  vocab.set_frequencies(zipf_expected_counts(ZipfLaw(ids, s), kSyntheticFrequencyTokens),
                        fmt::format("SYNTHETIC: expected counts of a Zipf({}) law over {} routing "
                                    "ids in {:.0e} routing tokens",
                                    s, ids, kSyntheticFrequencyTokens));
  return vocab;
}

std::string synthetic_vocab_mismatch(const config::Config& config, const RoutingVocab& vocab,
                                     const std::string& path) {
  const std::string rebuild = config::command_for_this_config("mowe_vocab");
  const int32_t ids = config.model().mowe().routing_vocab_size();
  const double s = config.data().synthetic_zipf_exponent();
  if (!vocab.synthetic())
    return fmt::format(
        "routing vocabulary {} was built from a text corpus, but data.corpus is SYNTHETIC: "
        "rebuild it with {}",
        path, rebuild);
  const SyntheticRouting& syn = vocab.file().synthetic();
  if (syn.routing_ids() != ids || syn.zipf_exponent() != s)
    return fmt::format(
        "routing vocabulary {} holds a Zipf({}) law over {} routing ids, but this config has "
        "data.synthetic_zipf_exponent = {} and model.mowe.routing_vocab_size = {}: rebuild it "
        "with {}",
        path, syn.zipf_exponent(), syn.routing_ids(), s, ids, rebuild);
  return "";
}

SyntheticExamples::SyntheticExamples(const config::Config& config, Split split) {
  const config::DataConfig& d = config.data();
  const double s = d.synthetic_zipf_exponent();
  first_ordinary_ = ordinary_start(d);
  MOWE_REQUIRE(d.sp_vocab_size() > first_ordinary_,
               "data.sp_vocab_size = {} leaves no ordinary token id after pad, EOS, unk and {} "
               "sentinels",
               d.sp_vocab_size(), d.num_sentinels());
  token_law_ = std::make_shared<const ZipfLaw>(d.sp_vocab_size() - first_ordinary_, s);
  routing_law_ = std::make_shared<const ZipfLaw>(config.model().mowe().routing_vocab_size(), s);
  seed_ = hash_ints(static_cast<uint64_t>(d.seed()),
                    split == Split::kTrain ? kTrainSalt : kValidationSalt);
  hash_ = hash_ints(
      seed_, static_cast<uint64_t>(d.sp_vocab_size()), static_cast<uint64_t>(d.num_sentinels()),
      static_cast<uint64_t>(routing_law_->size()), static_cast<uint64_t>(std::llround(s * 1e9)));
}

void SyntheticExamples::tokens(int64_t g, int64_t length, std::vector<int32_t>* out) const {
  MOWE_CHECK(g >= 0, "negative example index {}", g);
  out->resize(length);
  for (int64_t i = 0; i < length; ++i)
    (*out)[i] = first_ordinary_ +
                token_law_->draw(unit(hash_ints(seed_, kTokenDraw, static_cast<uint64_t>(g),
                                                static_cast<uint64_t>(i))));
}

void SyntheticExamples::routing_ids(int64_t g, int stream, int64_t n, int32_t* out) const {
  MOWE_CHECK(g >= 0, "negative example index {}", g);
  for (int64_t i = 0; i < n; ++i)
    out[i] = routing_law_->draw(
        unit(hash_ints(seed_, kRoutingDraw, static_cast<uint64_t>(g), static_cast<uint64_t>(stream),
                       static_cast<uint64_t>(i))));
}

}  // namespace mowe::data
