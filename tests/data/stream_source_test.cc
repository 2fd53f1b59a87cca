// Streaming corpora (data.streaming) at the loader: the global batch is the same at 1, 2, 3 and 4
// ranks (streams straddling ranks included), compressed shards give the batches of the plain
// ones, streams wrap into new epochs, and a state saved at a step boundary (merged over ranks, as
// a checkpoint does) resumes bit for bit, at another world size too.
#include "data/stream_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "data/pipeline.h"
#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

namespace fs = std::filesystem;

constexpr int kFiles = 5;
constexpr int kBatch = 6;

class StreamSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    if (!sentencepiece_available(&why)) return;
    dir_ = fs::temp_directory_path() / fmt::format("mowe_stream_source_test_{}", ::getpid());
    fs::create_directories(dir_ / "plain");
    fs::create_directories(dir_ / "packed");
    // Every 25th WordNet document, dealt to kFiles shards of unequal length.
    Corpus wordnet = wordnet_corpus("/usr/share/wordnet");
    std::vector<std::string> docs;
    for (size_t i = 0; i < wordnet.documents.size(); i += 25) docs.push_back(wordnet.documents[i]);
    std::vector<std::ofstream> shards;
    for (int f = 0; f < kFiles; ++f)
      shards.emplace_back(dir_ / "plain" / fmt::format("shard{}.jsonl", f));
    for (size_t i = 0; i < docs.size(); ++i) {
      std::string escaped;
      for (char c : docs[i]) {
        if (c == '"' || c == '\\') escaped += '\\';
        escaped += c;
      }
      shards[i % 8 < kFiles ? i % 8 : 0] << "{\"text\": \"" << escaped << "\"}\n";
    }
    shards.clear();
    for (int f = 0; f < kFiles; ++f) {
      const std::string tool = f % 2 ? "zstd" : "gzip", ext = f % 2 ? ".zst" : ".gz";
      const std::string cmd = fmt::format(
          "{} -q -c {} > {}", tool, (dir_ / "plain" / fmt::format("shard{}.jsonl", f)).string(),
          (dir_ / "packed" / fmt::format("shard{}.jsonl{}", f, ext)).string());
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    tokenizer_ = std::make_shared<const Tokenizer>(Tokenizer::from_model(
        Tokenizer::train(docs, {.vocab_size = 300, .num_sentinels = 16}), "test model"));
    // A routing table of the pieces alone: routing is not what these tests are about.
    table_ = std::make_shared<const RoutingTokenizer>(tokenizer_->vocab_size());
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override {
    std::string why;
    if (!sentencepiece_available(&why)) GTEST_SKIP() << why;
  }

  static config::Config make_config(const std::string& corpus, int streams, int threads = 0) {
    return train::load_config_text(
        "", "test",
        {"data.corpus=JSONL", "data.streaming=true", "data.corpus_path=" + corpus,
         fmt::format("data.stream_shards={}", streams), "data.num_sentinels=16",
         "data.input_length=48", "training.eval_every=0",
         fmt::format("data.loader_threads={}", threads),
         fmt::format("training.global_batch_size={}", kBatch)});
  }
  static std::unique_ptr<Loader> loader(const std::string& corpus, int streams, int rank, int world,
                                        int threads = 0) {
    const config::Config c = make_config(corpus, streams, threads);
    auto streaming = std::make_shared<const StreamingCorpus>(open_streaming_corpus(c, tokenizer_));
    return std::make_unique<Loader>(streaming, table_, loader_options(c, *tokenizer_, rank, world));
  }
  // The global batches of `steps` steps at `world` ranks, rows in rank order.
  static std::vector<std::vector<int32_t>> global_batches(const std::string& corpus, int streams,
                                                          int world, int steps, int threads = 0) {
    std::vector<std::vector<int32_t>> batches(steps);
    for (int r = 0; r < world; ++r) {
      auto l = loader(corpus, streams, r, world, threads);
      for (int s = 0; s < steps; ++s) append(l->next(), &batches[s]);
    }
    return batches;
  }
  // Row by row, so that ranks' batches concatenate into the global one.
  static void append(const Batch& b, std::vector<int32_t>* out) {
    for (int r = 0; r < b.batch_size; ++r) {
      const auto* in = b.encoder_input_ids.data() + r * b.input_length;
      const auto* t = b.targets.data() + r * b.target_length;
      out->insert(out->end(), in, in + b.input_length);
      out->insert(out->end(), t, t + b.target_length);
    }
  }
  static std::string plain() { return (dir_ / "plain").string(); }
  static std::string packed() { return (dir_ / "packed").string(); }

  static inline fs::path dir_;
  static inline std::shared_ptr<const Tokenizer> tokenizer_;
  static inline std::shared_ptr<const RoutingTokenizer> table_;
};

TEST_F(StreamSourceTest, TheGlobalBatchIsTheSameAtEveryWorldSize) {
  constexpr int kSteps = 12;  // enough for the short streams to start a second epoch
  for (int streams : {1, 3, 5}) {
    const auto one = global_batches(plain(), streams, 1, kSteps);
    for (int world : {2, 3})
      EXPECT_EQ(global_batches(plain(), streams, world, kSteps), one)
          << streams << " streams, " << world << " ranks";
    if (streams == 3) {
      EXPECT_EQ(global_batches(plain(), streams, 6, kSteps), one);
    }
  }
  // One thread per stream or one for all: a stream is always read by one thread at a time.
  EXPECT_EQ(global_batches(plain(), 5, 1, kSteps, 1), global_batches(plain(), 5, 1, kSteps, 5));
  EXPECT_EQ(global_batches(plain(), 5, 2, kSteps, 2), global_batches(plain(), 5, 1, kSteps, 3));
  // Other stream counts give other batches (the count is part of the data's identity).
  EXPECT_NE(global_batches(plain(), 3, 1, 2), global_batches(plain(), 5, 1, 2));
}

TEST_F(StreamSourceTest, CompressedShardsGiveTheBatchesOfThePlainOnes) {
  EXPECT_EQ(global_batches(packed(), 3, 2, 10), global_batches(plain(), 3, 2, 10));
}

TEST_F(StreamSourceTest, StreamsWrapIntoNewEpochs) {
  // One stream over all files; far more chunks than the files hold.
  auto l = loader(plain(), 1, 0, 1);
  int64_t epochs = 0;
  for (int s = 0; s < 3000 && epochs < 3; ++s) {
    l->next();
    epochs = l->state().streams(0).epoch();
  }
  EXPECT_GE(epochs, 3);
}

// The merge a checkpoint makes: every stream's position from whichever rank reads it.
LoaderState merged(const std::vector<LoaderState>& ranks) {
  LoaderState all = ranks[0];
  all.clear_streams();
  std::map<int64_t, StreamPosition> by_stream;
  for (const LoaderState& r : ranks)
    for (const StreamPosition& p : r.streams()) {
      auto [it, inserted] = by_stream.emplace(p.stream(), p);
      if (!inserted) {
        EXPECT_EQ(it->second.SerializeAsString(), p.SerializeAsString());
      }
    }
  for (const auto& [s, p] : by_stream) *all.add_streams() = p;
  return all;
}

TEST_F(StreamSourceTest, ResumesBitForBitAtAnyWorldSize) {
  // Late enough that the short streams are in their second epoch.
  constexpr int kSteps = 707, kStop = 700;
  const auto straight = global_batches(packed(), 5, 1, kSteps);
  // Three ranks stop at kStop (their loaders have built batches beyond it: the state is the
  // consumed position, not the built one).
  std::vector<LoaderState> states;
  for (int r = 0; r < 3; ++r) {
    auto l = loader(packed(), 5, r, 3);
    for (int s = 0; s < kStop; ++s) l->next();
    states.push_back(l->state());
    EXPECT_EQ(states.back().step(), kStop);
  }
  const LoaderState saved = merged(states);
  ASSERT_EQ(saved.streams_size(), 5);
  int later_epochs = 0, inside_documents = 0;
  for (const StreamPosition& p : saved.streams())
    later_epochs += p.epoch() > 0, inside_documents += p.token() > 0;
  EXPECT_GT(later_epochs, 0);
  EXPECT_GT(inside_documents, 0);
  for (int world : {1, 2, 3}) {
    std::vector<std::vector<int32_t>> resumed(kSteps - kStop);
    for (int r = 0; r < world; ++r) {
      auto l = loader(packed(), 5, r, world);
      l->restore(saved);
      for (int s = kStop; s < kSteps; ++s) append(l->next(), &resumed[s - kStop]);
    }
    EXPECT_EQ(resumed, std::vector<std::vector<int32_t>>(straight.begin() + kStop, straight.end()))
        << "resumed at " << world << " ranks";
  }
}

TEST_F(StreamSourceTest, RefusesStatesAndSettingsThatDoNotFit) {
  auto l = loader(plain(), 3, 0, 1);
  l->next();
  LoaderState state = l->state();
  auto message = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // Another stream count, batch size or set of files is refused naming what differs.
  EXPECT_EQ(message([&] { loader(plain(), 5, 0, 1)->restore(state); }),
            "the saved streaming loader state has 3 streams, this job has 5 (data.stream_shards, "
            "or its default from the number of files and the batch size): resume with the same "
            "stream count");
  LoaderState other_batch = state;
  other_batch.set_global_batch_size(12);
  EXPECT_EQ(message([&] { loader(plain(), 3, 0, 1)->restore(other_batch); }),
            "the saved streaming loader state was counted with training.global_batch_size = 12, "
            "this job has 6: a streaming corpus cannot change its batch size on resume");
  LoaderState other_files = state;
  other_files.set_num_files(7);
  EXPECT_NE(message([&] {
              loader(plain(), 3, 0, 1)->restore(other_files);
            }).find("read 7 corpus files, data.corpus_path now names 5"),
            std::string::npos);
  // The same shards compressed are other files (other names and sizes).
  EXPECT_NE(
      message([&] { loader(packed(), 3, 0, 1)->restore(state); }).find("the corpus files differ"),
      std::string::npos);
  // A copy of the shards elsewhere is the same data: only names and sizes count.
  fs::copy(plain(), dir_ / "moved");
  auto elsewhere = loader((dir_ / "moved").string(), 3, 0, 1);
  elsewhere->restore(state);
  EXPECT_EQ(elsewhere->state().SerializeAsString(), state.SerializeAsString());
  LoaderState moved = state;
  moved.mutable_streams(1)->set_chunk(7);
  EXPECT_EQ(message([&] { loader(plain(), 3, 0, 1)->restore(moved); }),
            "the saved position of stream 1 is after 7 chunks, but step 1 starts at chunk 2");
  LoaderState missing = state;
  missing.mutable_streams()->RemoveLast();
  EXPECT_EQ(message([&] { loader(plain(), 3, 0, 1)->restore(missing); }),
            "the saved loader state has no position for stream 2 of 3");
  EXPECT_EQ(message([&] { loader(plain(), 6, 0, 1); }),
            "data.stream_shards = 6 but data.corpus_path = \"" + plain() +
                "\" names 5 files: every stream reads files of its own, so split the corpus "
                "into at least 6 files or lower data.stream_shards");
  // A streaming loader is read forward: batches come from next() only.
  EXPECT_NE(message([&] { l->batch_at(0, 0); }).find("read forward only"), std::string::npos);
}

}  // namespace
}  // namespace mowe::data
