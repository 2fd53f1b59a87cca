// The pipeline from a config, end to end, on a small JSON-lines corpus: train the tokenizer,
// build and save the routing vocabulary (what mowe_vocab does), open the pipeline, load batches.
#include "data/pipeline.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

namespace fs = std::filesystem;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!sentencepiece_available(&why)) GTEST_SKIP() << why;
    dir_ = fs::temp_directory_path() / fmt::format("mowe_pipeline_test_{}", ::getpid());
    fs::create_directories(dir_);
    // Every 40th WordNet document as JSON lines, plus a line that is not UTF-8 and one that is
    // not JSON: both skipped.
    std::ofstream out(dir_ / "corpus.jsonl");
    Corpus wordnet = wordnet_corpus("/usr/share/wordnet");
    for (size_t i = 0; i < wordnet.documents.size(); i += 40) {
      std::string escaped;
      for (char c : wordnet.documents[i]) {
        if (c == '"' || c == '\\') escaped += '\\';
        escaped += c;
      }
      out << "{\"id\": " << i << ", \"text\": \"" << escaped << "\"}\n";
    }
    out << "{\"text\": \"bad \xff\"}\nnot json\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  config::Config make_config(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> overrides = {
        "data.corpus=JSONL",
        "data.corpus_path=" + (dir_ / "corpus.jsonl").string(),
        "data.sp_vocab_size=400",
        "data.num_sentinels=16",
        "data.input_length=64",
        "data.tokenizer_model=" + (dir_ / "out" / "spm.model").string(),
        "data.routing_vocab=" + (dir_ / "out" / "routing.pb").string(),
        "model.vocab_size=512",
        "model.mowe.routing_vocab_size=3000",
        "training.global_batch_size=4"};
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    return train::load_config_text("", "test", overrides);
  }

  fs::path dir_;
};

TEST_F(PipelineTest, BuildsFilesThenLoadsBatches) {
  config::Config config = make_config();
  Split split = read_split(config.data());
  Tokenizer tokenizer = train_or_load_tokenizer(config.data(), split, false);
  ASSERT_TRUE(fs::exists(config.data().tokenizer_model()));
  RoutingVocab vocab = build_routing_vocab(config, split, tokenizer);
  EXPECT_LE(vocab.size(), 3000);
  vocab.save(config.data().routing_vocab());
  // No temporary file is left behind.
  for (const auto& entry : fs::directory_iterator(dir_ / "out"))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();

  DataPipeline data = open_pipeline(config);
  EXPECT_EQ(data.tokenizer->hash(), tokenizer.hash());
  Loader loader(data.train, data.table, loader_options(config, *data.tokenizer, 0, 1));
  Batch b = loader.next();
  EXPECT_EQ(b.batch_size, 4);
  EXPECT_EQ(b.input_length, 64);
  for (int32_t id : b.encoder_routing_ids) EXPECT_LT(id, data.vocab->size());
  // Pad, EOS and the sentinels are not words: routing id -1 wherever they are, as padding.
  std::set<int32_t> specials = {Tokenizer::kPadId, Tokenizer::kEosId};
  for (int k = 0; k < tokenizer.num_sentinels(); ++k) specials.insert(tokenizer.sentinel(k));
  for (size_t i = 0; i < b.encoder_input_ids.size(); ++i) {
    const bool special = specials.count(b.encoder_input_ids[i]) || b.encoder_mask[i] == 0;
    if (special) {
      EXPECT_EQ(b.encoder_routing_ids[i], -1) << i;
    } else {
      EXPECT_GE(b.encoder_routing_ids[i], 0) << i;
    }
  }
  for (size_t i = 0; i < b.decoder_input_ids.size(); i += b.target_length)
    EXPECT_EQ(b.decoder_routing_ids[i], -1) << "the decoder's start token, row " << i;
  // The tokenizer is reused unless --retrain.
  Tokenizer again = train_or_load_tokenizer(config.data(), split, false);
  EXPECT_EQ(again.hash(), tokenizer.hash());

  // Opened again with the same inputs, the tokenized splits are shared, not tokenized anew; any
  // input that changes them (here the data seed, which splits and orders the documents) makes
  // new ones.
  const DataPipeline same = open_pipeline(config);
  EXPECT_EQ(same.train.get(), data.train.get());
  EXPECT_EQ(same.validation.get(), data.validation.get());
  const DataPipeline reseeded = open_pipeline(make_config({"data.seed=99"}));
  EXPECT_NE(reseeded.train.get(), data.train.get());

  // A routing vocabulary counted with the other case-variant setting is refused.
  EXPECT_THROW(open_pipeline(make_config({"model.mowe.case_variants=false"})), Error);
  // A tokenizer of another size than the config says is refused.
  EXPECT_THROW(load_tokenizer(make_config({"data.sp_vocab_size=300"}).data()), Error);
}

}  // namespace
}  // namespace mowe::data
