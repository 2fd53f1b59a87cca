// The SYNTHETIC corpus: examples are a pure function of (seed, index); token ids and routing ids
// follow their Zipf laws (chi-square against the expected counts the routing vocabulary
// records, which the dispatch plan is built from); the vocabulary and pipeline refuse what does
// not fit; settings that make no sense are refused naming the field.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "data/loader.h"
#include "data/pipeline.h"
#include "data/synthetic.h"
#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

constexpr char kConfig[] = R"(
model {
  d_model: 16 num_heads: 2 d_kv: 8 d_ff: 32 num_encoder_layers: 2 num_decoder_layers: 2
  vocab_size: 64
  relative_attention_num_buckets: 8 relative_attention_max_distance: 16
  mowe {
    encoder_layers: [1] decoder_layers: [1] num_unrouted_ids: 4 routing_vocab_size: 1000
    buckets { num_routing_ids: 0 num_blocks: 2 experts_per_block: 8 expert_d_ff: 8 }
  }
}
data { corpus: SYNTHETIC sp_vocab_size: 64 num_sentinels: 8 input_length: 32 seed: 7 }
training { global_batch_size: 4 }
)";

config::Config make_config(const std::vector<std::string>& overrides = {}) {
  return train::load_config_text(kConfig, "synthetic_test", overrides);
}

LoaderOptions options_for(const config::Config& c, int rank = 0, int world = 1) {
  return loader_options(c, synthetic_tokenizer(c.data()), rank, world);
}

std::unique_ptr<Loader> loader_for(const config::Config& c, int rank = 0, int world = 1) {
  auto examples = std::make_shared<const SyntheticExamples>(c, SyntheticExamples::Split::kTrain);
  auto table = std::make_shared<const RoutingTokenizer>(c.data().sp_vocab_size());
  return std::make_unique<Loader>(examples, table, options_for(c, rank, world));
}

bool same(const Example& a, const Example& b) {
  return a.inputs == b.inputs && a.targets == b.targets && a.input_routing == b.input_routing &&
         a.decoder_routing == b.decoder_routing;
}

TEST(Synthetic, ZipfLawProbabilities) {
  ZipfLaw law(1000, 1.0);
  double sum = 0;
  for (int64_t k = 0; k < law.size(); ++k) sum += law.probability(k);
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_NEAR(law.probability(0) / law.probability(1), 2.0, 1e-9);
  EXPECT_NEAR(law.probability(9) / law.probability(99), 10.0, 1e-9);
  EXPECT_EQ(law.draw(0.0), 0);
  EXPECT_EQ(law.draw(std::nextafter(1.0, 0.0)), 999);
  ZipfLaw uniform(10, 0.0);
  EXPECT_NEAR(uniform.probability(3), 0.1, 1e-12);
}

TEST(Synthetic, ExamplesArePureFunctionsOfSeedAndIndex) {
  const config::Config c = make_config();
  auto a = loader_for(c), b = loader_for(c);
  for (int64_t g : {0, 1, 17, 123456789}) EXPECT_TRUE(same(a->example(g), b->example(g))) << g;
  EXPECT_FALSE(same(a->example(3), a->example(4)));
  // Another data.seed: other examples.
  auto other = loader_for(make_config({"data.seed=8"}));
  int differ = 0;
  for (int64_t g = 0; g < 8; ++g) differ += !same(a->example(g), other->example(g));
  EXPECT_EQ(differ, 8);
  // The validation split draws from another seed.
  SyntheticExamples train(c, SyntheticExamples::Split::kTrain);
  SyntheticExamples validation(c, SyntheticExamples::Split::kValidation);
  std::vector<int32_t> t, v;
  train.tokens(0, 64, &t);
  validation.tokens(0, 64, &v);
  EXPECT_NE(t, v);
  EXPECT_NE(train.hash(), validation.hash());
  EXPECT_NE(train.hash(), SyntheticExamples(make_config({"data.synthetic_zipf_exponent=1.1"}),
                                            SyntheticExamples::Split::kTrain)
                              .hash());
}

TEST(Synthetic, ExamplesHaveTheShapeOfSpanCorruption) {
  const config::Config c = make_config();
  auto loader = loader_for(c);
  const Tokenizer tok = synthetic_tokenizer(c.data());
  SyntheticExamples examples(c, SyntheticExamples::Split::kTrain);
  std::vector<int32_t> raw;
  examples.tokens(5, 1000, &raw);
  for (int32_t t : raw) {
    ASSERT_GE(t, examples.first_ordinary_id());  // never pad, EOS, unk or a sentinel
    ASSERT_LT(t, 64);
  }
  Batch b = loader->batch_at(0, 0);
  EXPECT_EQ(b.input_length, 32);
  for (int r = 0; r < b.batch_size; ++r) {
    EXPECT_EQ(b.encoder_input_ids[r * 32], b.encoder_input_ids[r * 32]);  // row exists
    const Example ex = loader->example(r);
    EXPECT_EQ(ex.inputs.back(), Tokenizer::kEosId);
    EXPECT_EQ(ex.targets.back(), Tokenizer::kEosId);
    EXPECT_EQ(ex.targets.front(), tok.sentinel(0));
    EXPECT_EQ(ex.input_routing.size(), ex.inputs.size());
    EXPECT_EQ(ex.decoder_routing.size(), ex.decoder_inputs.size());
    // Drawn ids at word positions; pad, EOS and the sentinels unrouted (-1), as with text.
    for (const auto& [ids, routing] : {std::pair{&ex.inputs, &ex.input_routing},
                                       std::pair{&ex.decoder_inputs, &ex.decoder_routing}}) {
      for (size_t i = 0; i < ids->size(); ++i) {
        if ((*ids)[i] >= examples.first_ordinary_id())
          ASSERT_TRUE((*routing)[i] >= 0 && (*routing)[i] < 1000) << i;
        else
          ASSERT_EQ((*routing)[i], -1) << "token " << (*ids)[i];
      }
    }
    EXPECT_EQ(ex.decoder_routing.front(), -1);  // the decoder's start token
  }
}

TEST(Synthetic, SaveAndRestoreContinueTheSameBatches) {
  const config::Config c = make_config();
  auto a = loader_for(c);
  for (int s = 0; s < 3; ++s) a->next();
  const LoaderState state = a->state();
  const Batch want = a->next();
  auto b = loader_for(c);
  b->restore(state);
  const Batch got = b->next();
  EXPECT_EQ(got.encoder_input_ids, want.encoder_input_ids);
  EXPECT_EQ(got.encoder_routing_ids, want.encoder_routing_ids);
  EXPECT_EQ(got.decoder_routing_ids, want.decoder_routing_ids);
  EXPECT_EQ(got.targets, want.targets);
  // Another Zipf law is another stream: refused.
  auto other = loader_for(make_config({"data.synthetic_zipf_exponent=0.5"}));
  EXPECT_THROW(other->restore(state), Error);
}

// Pearson's chi-square of `counts` against probabilities `p`, bins merged in order until each
// expects at least 20 draws. Returns the statistic; *dof gets the degrees of freedom.
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p, int* dof) {
  const double n = static_cast<double>(std::accumulate(counts.begin(), counts.end(), int64_t{0}));
  double stat = 0, expected = 0, observed = 0;
  int bins = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    expected += n * p[i];
    observed += static_cast<double>(counts[i]);
    if (expected >= 20 || i + 1 == counts.size()) {
      stat += (observed - expected) * (observed - expected) / expected;
      ++bins;
      expected = observed = 0;
    }
  }
  *dof = bins - 1;
  return stat;
}

// A chi-square of k degrees of freedom has mean k and standard deviation sqrt(2k): the bound
// below is five standard deviations (the draws are deterministic, so the test never flakes; a
// biased sampler would exceed it by orders of magnitude).
double five_sigma(int dof) {
  return dof + 5 * std::sqrt(2.0 * dof);
}

TEST(Synthetic, RoutingIdsFollowTheRecordedFrequencies) {
  // Through the loader, every encoder and decoder position counted as the trainer routes them,
  // against the expected counts mowe_vocab writes for the dispatch plan.
  const config::Config c = make_config({"data.input_length=128"});
  auto loader = loader_for(c);
  const RoutingVocab vocab = synthetic_routing_vocab(c, synthetic_tokenizer(c.data()));
  ASSERT_EQ(vocab.size(), 1000);
  const std::vector<int64_t> freq = vocab.frequencies();
  const double total = std::accumulate(freq.begin(), freq.end(), 0.0);
  std::vector<double> p;
  for (int64_t f : freq) p.push_back(f / total);
  const std::vector<int64_t> counts = count_routing_ids(*loader, 4000, vocab.size());
  int dof = 0;
  const double stat = chi_square(counts, p, &dof);
  EXPECT_GT(dof, 200);
  EXPECT_LT(stat, five_sigma(dof)) << "chi-square " << stat << " with " << dof << " dof";
  // The frequency order is id order: the plan's buckets are contiguous id ranges.
  const std::vector<int32_t> order = vocab.frequency_order();
  for (int32_t r = 0; r < vocab.size(); ++r) ASSERT_EQ(order[r], r);
}

TEST(Synthetic, MillionIdLawRankFrequency) {
  // At the paper's size: one million routing ids, two million draws; the share of each decade
  // of ranks (1, 2-10, 11-100, ..., 100001-1M) matches the law within 5 standard errors.
  const config::Config c = make_config({"model.mowe.routing_vocab_size=1000000"});
  SyntheticExamples examples(c, SyntheticExamples::Split::kTrain);
  const int64_t n = 2'000'000;
  std::vector<int32_t> ids(n);
  examples.routing_ids(0, 0, n, ids.data());
  const ZipfLaw& law = examples.routing_law();
  int64_t lo = 0;
  for (int64_t hi = 1; hi <= 1'000'000; hi *= 10) {
    double p = 0;
    for (int64_t k = lo; k < hi; ++k) p += law.probability(k);
    const int64_t observed =
        std::count_if(ids.begin(), ids.end(), [&](int32_t id) { return id >= lo && id < hi; });
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(observed), n * p, 5 * sd) << "ranks " << lo << ".." << hi;
    lo = hi;
  }
}

TEST(Synthetic, TokenIdsFollowTheirLaw) {
  const config::Config c = make_config();
  SyntheticExamples examples(c, SyntheticExamples::Split::kTrain);
  const ZipfLaw& law = examples.token_law();
  ASSERT_EQ(law.size(), 64 - 3 - 8);
  std::vector<int64_t> counts(law.size(), 0);
  std::vector<int32_t> raw;
  for (int64_t g = 0; g < 2000; ++g) {
    examples.tokens(g, 100, &raw);
    for (int32_t t : raw) ++counts[t - examples.first_ordinary_id()];
  }
  std::vector<double> p;
  for (int64_t k = 0; k < law.size(); ++k) p.push_back(law.probability(k));
  int dof = 0;
  const double stat = chi_square(counts, p, &dof);
  EXPECT_LT(stat, five_sigma(dof)) << "chi-square " << stat << " with " << dof << " dof";
}

TEST(Synthetic, MillionIdVocabularyIsQuick) {
  const auto t0 = std::chrono::steady_clock::now();
  const config::Config c = make_config({"model.mowe.routing_vocab_size=1048576"});
  const RoutingVocab vocab = synthetic_routing_vocab(c, synthetic_tokenizer(c.data()));
  EXPECT_EQ(vocab.size(), 1048576);
  EXPECT_GT(vocab.frequencies().back(), 0);  // rounding leaves the tail its counts
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10);
}

TEST(Synthetic, TokenizerHasSentinelsAndNoText) {
  const Tokenizer t = Tokenizer::synthetic(64, 8);
  EXPECT_EQ(t.vocab_size(), 64);
  EXPECT_EQ(t.num_sentinels(), 8);
  EXPECT_EQ(t.sentinel(0), 3);
  EXPECT_EQ(t.piece(3), "<extra_id_0>");
  EXPECT_EQ(t.decode({1, 3}), "</s> <extra_id_0>");
  EXPECT_NE(t.hash(), Tokenizer::synthetic(64, 9).hash());
  try {
    t.encode("hello");
    FAIL() << "encoded text";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SYNTHETIC"), std::string::npos) << e.what();
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Synthetic, PipelineRefusesAVocabularyOfAnotherLaw) {
  const std::string dir = testing::TempDir() + "/synthetic_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/vocab.pb";
  config::Config c = make_config({"data.routing_vocab=" + path});
  synthetic_routing_vocab(c, synthetic_tokenizer(c.data())).save(path);
  const DataPipeline p = open_pipeline(c);
  ASSERT_TRUE(p.synthetic_train && p.synthetic_validation && !p.train);
  EXPECT_EQ(p.vocab->size(), 1000);
  const std::string steeper = error_of([&] {
    open_pipeline(make_config({"data.routing_vocab=" + path, "data.synthetic_zipf_exponent=1.5"}));
  });
  EXPECT_NE(steeper.find("data.synthetic_zipf_exponent = 1.5"), std::string::npos) << steeper;
  EXPECT_NE(steeper.find("mowe_vocab"), std::string::npos) << steeper;
  const std::string larger = error_of([&] {
    open_pipeline(
        make_config({"data.routing_vocab=" + path, "model.mowe.routing_vocab_size=2000"}));
  });
  EXPECT_NE(larger.find("over 1000 routing ids"), std::string::npos) << larger;
  // The vocabulary of a text corpus is refused by name, and vice versa.
  const std::string text = error_of([&] {
    open_pipeline(make_config({"data.routing_vocab=" + path, "data.corpus=WORDNET",
                               "data.tokenizer_model=" + dir + "/missing.model"}));
  });
  EXPECT_FALSE(text.empty());
  EXPECT_NE(error_of([&] { read_split(c.data()); }).find("SYNTHETIC"), std::string::npos);
}

TEST(Synthetic, SettingsThatMakeNoSenseAreRefusedByField) {
  struct Case {
    std::vector<std::string> overrides;
    std::string field, says;
  };
  for (const Case& k : std::vector<Case>{
           {{"data.task=WORDNET_QA", "data.target_length=8"},
            "data.task",
            "data.corpus = SYNTHETIC"},
           {{"data.corpus_path=/tmp/x.txt"}, "data.corpus_path", "reads no file"},
           {{"data.tokenizer_model=/tmp/x.model"}, "data.tokenizer_model", "no SentencePiece"},
           {{"data.num_sentinels=61"}, "data.sp_vocab_size", "leaves no ordinary token id"},
           {{"data.synthetic_zipf_exponent=5"}, "data.synthetic_zipf_exponent", "4"},
           {{"data.corpus=WORDNET", "data.synthetic_zipf_exponent=1.2"},
            "data.synthetic_zipf_exponent",
            "only applies to data.corpus = SYNTHETIC"},
       }) {
    config::Config c = train::load_config_text(kConfig, "synthetic_test");
    std::string error;
    try {
      c = make_config(k.overrides);
    } catch (const Error& e) {
      error = e.what();
    }
    if (error.empty()) {
      const auto v = train::find_violation(c);
      ASSERT_TRUE(v) << k.field;
      EXPECT_EQ(v->path, k.field);
      error = v->message;
    }
    EXPECT_NE(error.find(k.field), std::string::npos) << error;
    EXPECT_NE(error.find(k.says), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace mowe::data
