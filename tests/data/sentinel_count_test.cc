// The configuration's refusal of too few sentinels against the loader itself: over many span
// settings, validation accepts data.num_sentinels exactly when the loader can corrupt every
// example with that many sentinels, and the spans the loader really cuts are the count both use.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "data/rng.h"
#include "data/loader.h"
#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

constexpr int32_t kFirstSentinel = 1000;  // ordinary tokens are 20..999
constexpr int kMaxSentinels = 1100;       // more than any setting below needs
constexpr int32_t kVocab = kFirstSentinel + kMaxSentinels;

struct Setting {
  int64_t input_length;
  double noise_density, mean_noise_span_length;
};

// Accepted, or the field a refusal names.
std::string validation(const Setting& s, int64_t num_sentinels) {
  try {
    train::load_config_text(
        "", "test",
        {fmt::format("data.input_length={}", s.input_length),
         fmt::format("data.noise_density={}", s.noise_density),
         fmt::format("data.mean_noise_span_length={}", s.mean_noise_span_length),
         fmt::format("data.num_sentinels={}", num_sentinels), "data.sp_vocab_size=4096",
         "model.vocab_size=4096"});
    return "accepted";
  } catch (const Error& e) {
    return e.what();
  }
}

LoaderOptions options(const Setting& s, int num_sentinels) {
  LoaderOptions o;
  o.input_length = s.input_length;
  o.noise_density = s.noise_density;
  o.mean_noise_span_length = s.mean_noise_span_length;
  o.seed = 11;
  o.global_batch_size = 1;
  for (int k = 0; k < num_sentinels; ++k) o.sentinels.push_back(kFirstSentinel + k);
  return o;
}

// Settings across the ranges validation allows, with the round values users write among them
// (noise density 0.5 takes T5's special case).
std::vector<Setting> settings() {
  std::vector<Setting> out = {{512, 0.15, 3.0}, {4, 0.15, 3.0},   {568, 0.15, 3.0},
                              {128, 0.5, 1.0},  {1024, 0.9, 1.0}, {7, 0.5, 3.0}};
  Rng rng(2024);
  for (int i = 0; i < 300; ++i) {
    Setting s;
    s.input_length = 4 + static_cast<int64_t>(rng.below(1021));
    s.noise_density = rng.below(4) == 0 ? 0.05 * (1 + rng.below(19)) : 0.01 + 0.98 * rng.uniform();
    s.mean_noise_span_length = rng.below(3) == 0 ? 1.0 + rng.below(10) : 1.0 + 9.0 * rng.uniform();
    out.push_back(s);
  }
  return out;
}

TEST(SentinelCount, ValidationAcceptsExactlyWhatTheLoaderCanCorrupt) {
  Rng rng(7);
  std::vector<int32_t> tokens(20000);
  for (int32_t& t : tokens) t = 20 + static_cast<int32_t>(rng.below(kFirstSentinel - 20));
  auto stream = std::make_shared<const TokenStream>(std::move(tokens), 3);
  auto table = std::make_shared<const RoutingTokenizer>(kVocab);

  int impossible = 0;
  for (const Setting& s : settings()) {
    SCOPED_TRACE(fmt::format("input_length {} noise_density {} mean_noise_span_length {}",
                             s.input_length, s.noise_density, s.mean_noise_span_length));
    Loader roomy(stream, table, options(s, kMaxSentinels));
    // Too many short spans to separate them with uncorrupted tokens: the loader cannot make an
    // example, and validation refuses the density whatever the sentinels.
    const SpanLengths& l = roomy.lengths();
    if (l.noise_spans > l.tokens_length - l.noise_tokens) {
      EXPECT_THROW(roomy.example(0), Error);
      const std::string refused = validation(s, kMaxSentinels);
      EXPECT_EQ(refused.find(fmt::format("--set data.noise_density={}: data.noise_density = ",
                                         s.noise_density)),
                0u)
          << refused;
      ++impossible;
      continue;
    }
    // The spans the loader really cuts: count the distinct sentinels in a few examples.
    int64_t spans = 0;
    for (int64_t g = 0; g < 3; ++g) {
      const Example ex = roomy.example(g);
      std::set<int32_t> used;
      for (int32_t t : ex.inputs)
        if (t >= kFirstSentinel) used.insert(t);
      ASSERT_TRUE(g == 0 || static_cast<int64_t>(used.size()) == spans) << "example " << g;
      spans = static_cast<int64_t>(used.size());
    }
    ASSERT_EQ(spans, roomy.lengths().noise_spans);

    // Exactly enough: both accept. One fewer: both refuse, validation naming the field.
    EXPECT_EQ(validation(s, spans), "accepted");
    EXPECT_NO_THROW(Loader(stream, table, options(s, static_cast<int>(spans))));
    if (spans > 1) {
      const std::string refused = validation(s, spans - 1);
      EXPECT_NE(refused.find(fmt::format("data.num_sentinels = {} is too few", spans - 1)),
                std::string::npos)
          << refused;
      EXPECT_NE(refused.find(fmt::format("at least {}", spans)), std::string::npos) << refused;
      EXPECT_THROW(Loader(stream, table, options(s, static_cast<int>(spans - 1))), Error);
    }
  }
  EXPECT_GT(impossible, 0);  // the draw covers that refusal too
}

}  // namespace
}  // namespace mowe::data
