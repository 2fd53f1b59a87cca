// A SentencePiece model the user brings, as T5's 32K model comes: trained elsewhere, without
// sentinels or with them at the top of the vocabulary. Stood in for by a small model trained here
// without sentinels (a few seconds on part of WordNet); the sentinels are then appended as
// mowe_vocab --add-sentinels and T5's seqio do.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "data/corpus.h"
#include "data/loader.h"
#include "data/pipeline.h"
#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/files.h"

namespace mowe::data {
namespace {

namespace fs = std::filesystem;

constexpr int kPieces = 400;  // of the user's model, before sentinels

// What seqio writes for T5 (ModelProto.pieces entries appended to the serialized model), spelled
// out in the wire format so that the test does not depend on the code under test.
void append_piece(const std::string& piece, std::string* model) {
  std::string entry = "\x0a";
  entry += static_cast<char>(piece.size());
  entry += piece;
  entry += std::string("\x15\0\0\0\0\x18\x04", 7);  // score 0, type USER_DEFINED
  *model += "\x0a";
  *model += static_cast<char>(entry.size());
  *model += entry;
}

// The message of the Error that f throws (messages are the interface: compared whole).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class UserTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!sentencepiece_available(&why_)) return;
    dir_ = fs::temp_directory_path() / fmt::format("mowe_user_tokenizer_test_{}", ::getpid());
    fs::create_directories(dir_);
    Corpus wordnet = wordnet_corpus("/usr/share/wordnet");
    for (size_t i = 0; i < wordnet.documents.size(); i += 40) docs_.push_back(wordnet.documents[i]);
    TokenizerTrainOptions o;
    o.vocab_size = kPieces;
    o.num_sentinels = 0;
    plain_ = Tokenizer::train(docs_, o);
    write_file_atomically((dir_ / "plain.model").string(), plain_);
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!why_.empty()) GTEST_SKIP() << why_;
  }

  static config::Config make_config(const std::string& model, int sp_vocab_size) {
    return train::load_config_text(
        "", "test",
        {"data.corpus=TEXT", "data.corpus_path=unused.txt", "data.tokenizer_model=" + model,
         fmt::format("data.sp_vocab_size={}", sp_vocab_size), "data.num_sentinels=16",
         "data.input_length=64", "model.vocab_size=512", "training.global_batch_size=4"});
  }

  static inline std::string why_;
  static inline fs::path dir_;
  static inline std::vector<std::string> docs_;
  static inline std::string plain_;
};

TEST_F(UserTokenizerTest, ModelWithoutSentinelsIsRefusedWithWhatToDo) {
  const Tokenizer plain = Tokenizer::from_model(plain_, "plain.model");
  EXPECT_EQ(plain.vocab_size(), kPieces);
  EXPECT_EQ(plain.num_sentinels(), 0);
  EXPECT_FALSE(plain.trained_by_mowe_vocab());
  const std::string path = (dir_ / "plain.model").string();
  const std::string copy = (dir_ / "plain.sentinels.model").string();
  const std::string message =
      "SentencePiece model " + path +
      " has 0 sentinel pieces (<extra_id_0>, <extra_id_1>, ...), but data.num_sentinels needs "
      "16: write a copy with the missing ones appended at the top of its vocabulary, as T5 "
      "does, with mowe_vocab --config <config> --add-sentinels " +
      copy + ", then set data.tokenizer_model=" + copy + " and data.sp_vocab_size=416";
  const config::Config config = make_config(path, kPieces);
  EXPECT_EQ(error_of([&] { load_tokenizer(config.data()); }), message);
  // mowe_vocab's path too, and its --retrain would not replace the user's model.
  const Split no_documents;
  EXPECT_EQ(error_of([&] { train_or_load_tokenizer(config.data(), no_documents, false); }),
            message);
  EXPECT_EQ(error_of([&] { train_or_load_tokenizer(config.data(), no_documents, true); }),
            "--retrain would replace SentencePiece model " + path +
                ", which mowe_vocab did not train (its sentinels are not right after pad, eos "
                "and unk): to train a new one, set data.tokenizer_model to another path");
}

TEST_F(UserTokenizerTest, AppendedSentinelsSitAtTheTopInT5Order) {
  const Tokenizer plain = Tokenizer::from_model(plain_, "plain.model");
  const Tokenizer t = Tokenizer::from_model(plain.with_sentinels(16), "copy.model");
  ASSERT_EQ(t.vocab_size(), kPieces + 16);
  ASSERT_EQ(t.num_sentinels(), 16);
  for (int k = 0; k < 16; ++k) {
    EXPECT_EQ(t.sentinel(k), kPieces + 15 - k);  // T5: <extra_id_0> is the last id
    EXPECT_EQ(t.piece(t.sentinel(k)), fmt::format("<extra_id_{}>", k));
    EXPECT_TRUE(t.is_sentinel(t.sentinel(k)));
  }
  EXPECT_FALSE(t.is_sentinel(kPieces - 1));
  EXPECT_FALSE(t.trained_by_mowe_vocab());
  for (int32_t id = 0; id < kPieces; ++id) ASSERT_EQ(t.piece(id), plain.piece(id)) << id;
  // Text encodes as before; a sentinel written in text is its piece.
  const std::string text = "Alan Turing was an English mathematician (1912-1954).";
  EXPECT_EQ(t.encode(text), plain.encode(text));
  EXPECT_EQ(t.decode(t.encode(text)), text);
  const std::vector<int32_t> ids = t.encode("a <extra_id_3> b");
  EXPECT_NE(std::find(ids.begin(), ids.end(), t.sentinel(3)), ids.end());
  // Nothing is missing any more: the same bytes again.
  EXPECT_EQ(t.missing_sentinels(16), 0);
  EXPECT_EQ(t.with_sentinels(16), t.model());
  // Only the missing ones are added: 16 -> 20 appends <extra_id_19..16>.
  const Tokenizer more = Tokenizer::from_model(t.with_sentinels(20), "more.model");
  EXPECT_EQ(more.vocab_size(), kPieces + 20);
  EXPECT_EQ(more.sentinel(0), t.sentinel(0));
  EXPECT_EQ(more.sentinel(19), kPieces + 16);
}

// seqio (T5's vocabulary) writes the sentinels as "▁<extra_id_k>", the highest first.
TEST_F(UserTokenizerTest, SeqioSpellingIsRecognised) {
  std::string model = plain_;
  for (int k = 99; k >= 0; --k) append_piece(fmt::format("\xe2\x96\x81<extra_id_{}>", k), &model);
  const Tokenizer t = Tokenizer::from_model(model, "seqio.model");
  ASSERT_EQ(t.vocab_size(), kPieces + 100);
  ASSERT_EQ(t.num_sentinels(), 100);
  for (int k = 0; k < 100; ++k) EXPECT_EQ(t.sentinel(k), kPieces + 99 - k);
  EXPECT_EQ(t.missing_sentinels(100), 0);
}

// A model without T5's special ids (SentencePiece's own default has no pad) is refused.
TEST_F(UserTokenizerTest, OtherSpecialIdsAreRefused) {
  // TrainerSpec (ModelProto field 2) merged with pad_piece (field 48) = "<none>": no pad.
  std::string model = plain_;
  const std::string pad_piece = std::string("\x82\x03\x06", 3) + "<none>";
  model += "\x12";
  model += static_cast<char>(pad_piece.size());
  model += pad_piece;
  EXPECT_EQ(error_of([&] { Tokenizer::from_model(model, "nopad.model"); }),
            "SentencePiece model nopad.model has pad=-1, eos=1, unk=2 (-1: none), but MoWE uses "
            "T5's ids pad=0, eos=1, unk=2: use a model trained with those ids (T5's models "
            "are), or let mowe_vocab train one on the corpus by setting data.tokenizer_model "
            "to a path that does not exist yet");
}

// The copy as mowe_vocab and open_pipeline load it, and the loader's examples: sentinels at the
// top of the vocabulary mark the spans, and filling the spans back in gives the corpus's text.
TEST_F(UserTokenizerTest, SpanCorruptionUsesTheAppendedSentinels) {
  const std::string copy = (dir_ / "plain.sentinels.model").string();
  write_file_atomically(copy, Tokenizer::from_model(plain_, "plain.model").with_sentinels(16));
  const config::Config config = make_config(copy, kPieces + 16);
  const Split no_documents;
  const Tokenizer loaded = train_or_load_tokenizer(config.data(), no_documents, false);
  const Tokenizer t = load_tokenizer(config.data());
  EXPECT_EQ(t.hash(), loaded.hash());
  EXPECT_EQ(t.sentinel(0), kPieces + 15);

  auto stream =
      std::make_shared<const TokenStream>(tokenize_documents(docs_, t), Tokenizer::kEosId, 5);
  auto table = std::make_shared<const RoutingTokenizer>(t.vocab_size());
  Loader loader(stream, table, loader_options(config, t, 0, 1));
  // SentencePiece's normalisation turns line breaks and runs of spaces into one space.
  std::string corpus;
  for (const std::string& doc : docs_) {
    for (char c : doc) {
      const char ch = std::isspace(static_cast<unsigned char>(c)) ? ' ' : c;
      if (ch != ' ' || (!corpus.empty() && corpus.back() != ' ')) corpus += ch;
    }
    corpus += ' ';
  }
  for (int64_t g = 0; g < 5; ++g) {
    Example ex = loader.example(g);
    ASSERT_EQ(ex.targets.front(), t.sentinel(0));
    // Each target span follows its sentinel; put it back where the inputs have that sentinel.
    std::vector<std::vector<int32_t>> spans(t.num_sentinels());
    int current = -1;
    ASSERT_EQ(ex.targets.back(), Tokenizer::kEosId);
    for (size_t i = 0; i + 1 < ex.targets.size(); ++i) {  // a span may hold a document's EOS
      const int32_t id = ex.targets[i];
      if (t.is_sentinel(id)) {
        current = static_cast<int>(kPieces + 15 - id);
        ASSERT_EQ(t.sentinel(current), id);
      } else {
        spans.at(current).push_back(id);
      }
    }
    std::vector<int32_t> raw;
    int used = 0;
    ASSERT_EQ(ex.inputs.back(), Tokenizer::kEosId);
    ex.inputs.pop_back();
    for (int32_t id : ex.inputs) {
      if (!t.is_sentinel(id)) {
        raw.push_back(id);
        continue;
      }
      ASSERT_EQ(id, t.sentinel(used++));  // in order, from the top id down
      raw.insert(raw.end(), spans[kPieces + 15 - id].begin(), spans[kPieces + 15 - id].end());
    }
    EXPECT_EQ(used, loader.lengths().noise_spans);
    // The chunk's text, document by document (EOS between them), is the corpus's.
    std::vector<int32_t> piece;
    raw.push_back(Tokenizer::kEosId);
    for (int32_t id : raw) {
      if (id != Tokenizer::kEosId) {
        piece.push_back(id);
        continue;
      }
      const std::string text = t.decode(piece);
      EXPECT_NE(corpus.find(text), std::string::npos) << "example " << g << ": " << text;
      piece.clear();
    }
  }
}

}  // namespace
}  // namespace mowe::data
