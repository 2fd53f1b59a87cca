// SentencePiece and the routing vocabulary on a tiny tokenizer trained once per binary on a
// twelfth of WordNet (a few seconds), with the full WordNet lemma names as candidates.
#include "data/routing_vocab.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "data/corpus.h"
#include "data/loader.h"
#include "data/words.h"
#include "runtime/check.h"
#include "runtime/files.h"
#include "tests/util/expect_error.h"

namespace mowe::data {
namespace {

using mowe::testing::expect_error;

namespace fs = std::filesystem;

class RoutingVocabTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!sentencepiece_available(&why_)) return;
    dir_ = fs::temp_directory_path() / fmt::format("mowe_vocab_test_{}", ::getpid());
    fs::create_directories(dir_);
    std::vector<Synset> synsets = read_wordnet("/usr/share/wordnet");
    for (size_t i = 0; i < synsets.size(); ++i) {
      std::string doc = synset_document(synsets[i]);
      if (i % 12 == 0 || doc.find("Turing") != std::string::npos) docs_.push_back(doc);
      names_.insert(names_.end(), synsets[i].lemmas.begin(), synsets[i].lemmas.end());
    }
    TokenizerTrainOptions o;
    o.vocab_size = 600;
    o.num_sentinels = 8;
    tokenizer_ = new Tokenizer(Tokenizer::from_model(Tokenizer::train(docs_, o), "tiny.model"));
    tokens_ = tokenize_documents(docs_, *tokenizer_);
    vocab_ = new RoutingVocab(RoutingVocab::build(*tokenizer_, names_, docs_, tokens_, {}));
  }
  static void TearDownTestSuite() {
    delete vocab_;
    delete tokenizer_;
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override {
    if (!why_.empty()) GTEST_SKIP() << why_;
  }

  static int32_t id_of(const std::string& word) {
    for (int32_t id = vocab_->default_vocab_size(); id < vocab_->size(); ++id)
      if (vocab_->word(id) == word) return id;
    return -1;
  }
  static std::vector<int32_t> route(const RoutingTokenizer& table, const std::vector<int32_t>& t) {
    std::vector<int32_t> ids(t.size());
    table.route(t, ids);
    return ids;
  }

  static inline std::string why_;
  static inline fs::path dir_;
  static inline std::vector<std::string> docs_, names_;
  static inline Tokenizer* tokenizer_ = nullptr;
  static inline TokenizedCorpus tokens_;
  static inline RoutingVocab* vocab_ = nullptr;
};

TEST_F(RoutingVocabTest, TokenizerFollowsT5Conventions) {
  const Tokenizer& t = *tokenizer_;
  EXPECT_EQ(t.vocab_size(), 600);
  EXPECT_EQ(t.piece(0), "<pad>");
  EXPECT_EQ(t.piece(1), "</s>");
  EXPECT_EQ(t.piece(2), "<unk>");
  ASSERT_EQ(t.num_sentinels(), 8);
  for (int k = 0; k < 8; ++k) EXPECT_EQ(t.piece(t.sentinel(k)), fmt::format("<extra_id_{}>", k));
  const std::string text = "Alan Turing was an English mathematician (1912-1954).";
  EXPECT_EQ(t.decode(t.encode(text)), text);
  std::vector<int32_t> ids = t.encode("a <extra_id_3> b");
  EXPECT_NE(std::find(ids.begin(), ids.end(), t.sentinel(3)), ids.end());
  // The same bytes give the same hash; a reload from disk is the same tokenizer.
  EXPECT_EQ(Tokenizer::from_model(t.model(), "copy").hash(), t.hash());
}

TEST_F(RoutingVocabTest, MathematicianGetsOneRoutingIdAtItsLastPiece) {
  const std::vector<int32_t> word = tokenizer_->encode("mathematician");
  ASSERT_GT(word.size(), 1u) << "the premise: SentencePiece splits the word";
  const int32_t id = id_of("mathematician");
  ASSERT_GE(id, vocab_->default_vocab_size());
  const std::vector<int32_t> t = tokenizer_->encode("Alan Turing was an English mathematician");
  ASSERT_TRUE(std::equal(word.begin(), word.end(), t.end() - word.size()));
  const std::vector<int32_t> ids = route(vocab_->table(true), t);
  EXPECT_EQ(ids.back(), id);
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_NE(ids[i], id) << i;
}

TEST_F(RoutingVocabTest, AbsentWordFallsBackToItsPieces) {
  const RoutingTokenizer table = vocab_->table(true);
  const std::vector<int32_t> t = tokenizer_->encode("qqxqzj");
  for (size_t i = 0; i < t.size(); ++i)
    for (size_t len = 2; len <= i + 1; ++len)
      ASSERT_EQ(table.find(std::vector<int32_t>(t.begin() + (i + 1 - len), t.begin() + i + 1)), -1);
  EXPECT_EQ(route(table, t), t);
}

TEST_F(RoutingVocabTest, CaseVariantsRouteCasedWordsToTheirEntry) {
  const int32_t id = id_of("turing");
  ASSERT_GE(id, vocab_->default_vocab_size());
  for (const char* text : {"Alan Turing", "ALAN TURING"}) {
    const std::vector<int32_t> t = tokenizer_->encode(text);
    EXPECT_EQ(route(vocab_->table(true), t).back(), id) << text;
    EXPECT_NE(route(vocab_->table(false), t).back(), id) << text;
  }
  const auto& s = vocab_->file().stats();
  EXPECT_GT(s.word_share_with_variants(), s.word_share_without_variants());
  EXPECT_GT(vocab_->file().variant_keys_size(), 0);
}

TEST_F(RoutingVocabTest, EntriesAreOrderedByCorpusFrequency) {
  const auto& f = vocab_->file();
  ASSERT_GT(f.entries_size(), 1000);
  for (int k = 1; k < f.entries_size(); ++k)
    ASSERT_GE(f.entries(k - 1).word_count(), f.entries(k).word_count());
  for (const auto& e : f.entries()) {
    ASSERT_GE(e.tokens_size(), 2);
    ASSERT_LE(e.tokens_size(), RoutingTokenizer::kMaxKeyLength);
  }
  // A cap on routing ids keeps the most frequent words.
  RoutingVocab capped = RoutingVocab::build(*tokenizer_, names_, docs_, tokens_,
                                            {.max_routing_ids = 700, .case_variants = true});
  ASSERT_EQ(capped.size(), 700);
  EXPECT_EQ(capped.file().entries(99).word(), f.entries(99).word());
  EXPECT_GT(capped.file().stats().dropped_over_limit(), 0);
}

TEST_F(RoutingVocabTest, SavesLoadsAndCountsFrequencies) {
  RoutingVocab vocab = *vocab_;
  auto table = std::make_shared<const RoutingTokenizer>(vocab.table(true));
  LoaderOptions o;
  o.input_length = 64;
  for (int k = 0; k < 8; ++k) o.sentinels.push_back(tokenizer_->sentinel(k));
  Loader loader(std::make_shared<const TokenStream>(tokens_, 1, 3), table, o);
  std::vector<int64_t> freq = count_routing_ids(loader, 50, vocab.size());
  int64_t total = 0, words = 0;
  for (int64_t c : freq) total += c;
  for (int64_t g = 0; g < 50; ++g) {
    const Example ex = loader.example(g);
    for (const auto* ids : {&ex.inputs, &ex.decoder_inputs})
      for (int32_t t : *ids) words += !table->unrouted(t);
  }
  EXPECT_EQ(total, words) << "every position but pad, EOS and the sentinels";
  EXPECT_LT(total, 50 * (loader.lengths().inputs_length + loader.lengths().targets_length));
  vocab.set_frequencies(freq, "test");
  const std::string path = (dir_ / "sub" / "vocab.pb").string();
  vocab.save(path);
  RoutingVocab loaded = RoutingVocab::load(path, *tokenizer_);
  EXPECT_EQ(loaded.size(), vocab.size());
  EXPECT_EQ(loaded.frequencies(), freq);
  std::vector<int32_t> order = loaded.frequency_order();
  for (size_t r = 1; r < order.size(); ++r) ASSERT_GE(freq[order[r - 1]], freq[order[r]]);
  EXPECT_DOUBLE_EQ(frequency_share(freq, order, 0, -1), 1.0);
  const std::vector<int32_t> t = tokenizer_->encode(docs_[10]);
  EXPECT_EQ(route(loaded.table(true), t), route(vocab.table(true), t));
}

// The specification of routing, independently of the hash table: each position's longest
// suffix of 2..9 pieces among the keys (words first, then case variants; the first insertion of
// a key wins), else the piece; pad, EOS and the sentinels -1.
using Keys = std::map<std::vector<int32_t>, int32_t>;

Keys all_keys(const RoutingVocab& vocab, bool variants) {
  Keys keys;
  const auto& f = vocab.file();
  for (int k = 0; k < f.entries_size(); ++k)
    keys.emplace(std::vector<int32_t>(f.entries(k).tokens().begin(), f.entries(k).tokens().end()),
                 vocab.default_vocab_size() + k);
  if (variants)
    for (const RoutingKey& key : f.variant_keys())
      keys.emplace(std::vector<int32_t>(key.tokens().begin(), key.tokens().end()),
                   key.routing_id());
  return keys;
}

std::vector<int32_t> brute_force_route(const Keys& keys, const Tokenizer& tokenizer,
                                       std::span<const int32_t> tokens) {
  std::set<int32_t> specials = {Tokenizer::kPadId, Tokenizer::kEosId};
  for (int k = 0; k < tokenizer.num_sentinels(); ++k) specials.insert(tokenizer.sentinel(k));
  std::vector<int32_t> out(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    out[i] = specials.count(tokens[i]) ? -1 : tokens[i];
    if (out[i] < 0) continue;
    for (size_t len = 2; len <= 9 && len <= i + 1; ++len) {
      std::vector<int32_t> suffix(tokens.begin() + (i + 1 - len), tokens.begin() + i + 1);
      if (auto it = keys.find(suffix); it != keys.end()) out[i] = it->second;
    }
  }
  return out;
}

TEST_F(RoutingVocabTest, FrequenciesAreCountedOnRawTextWithoutSpecials) {
  const RoutingVocab& vocab = *vocab_;
  // A brute-force count over the tokenized training documents, routed as running text.
  std::vector<int64_t> want(vocab.size(), 0);
  const Keys keys = all_keys(vocab, true);
  for (int64_t d = 0; d < tokens_.num_documents(); ++d)
    for (int32_t id : brute_force_route(keys, *tokenizer_, tokens_.document(d)))
      if (id >= 0) ++want[id];
  EXPECT_EQ(vocab.frequencies(), want);
  // Pad, EOS and the sentinels are never routed: frequency 0, so none of them is among the 16
  // unrouted (most frequent) ids, nor in any bucket's head.
  std::vector<int32_t> specials = {Tokenizer::kPadId, Tokenizer::kEosId};
  for (int k = 0; k < tokenizer_->num_sentinels(); ++k) specials.push_back(tokenizer_->sentinel(k));
  EXPECT_EQ(std::vector<int32_t>(vocab.file().unrouted_pieces().begin(),
                                 vocab.file().unrouted_pieces().end()),
            specials);
  const std::vector<int32_t> order = vocab.frequency_order();
  std::string top;
  for (int r = 0; r < 16; ++r) {
    top += " " + (order[r] < vocab.default_vocab_size() ? tokenizer_->piece(order[r])
                                                        : vocab.word(order[r]));
    EXPECT_EQ(std::find(specials.begin(), specials.end(), order[r]), specials.end())
        << tokenizer_->piece(order[r]) << " is among the 16 most frequent ids";
  }
  std::printf("top 16 routing ids on raw text:%s\n", top.c_str());
  for (int32_t id : specials) EXPECT_EQ(vocab.frequencies()[id], 0) << id;
  // The table the trainer uses routes them to -1 in running text with sentinels in it.
  const std::vector<int32_t> t = tokenizer_->encode("a <extra_id_3> mathematician");
  std::vector<int32_t> ids = route(vocab.table(true), t);
  EXPECT_EQ(ids, brute_force_route(keys, *tokenizer_, t));
  EXPECT_NE(std::find(ids.begin(), ids.end(), -1), ids.end());
}

TEST_F(RoutingVocabTest, VocabularyOfAnotherTokenizerIsRefused) {
  const std::string path = (dir_ / "vocab.pb").string();
  vocab_->save(path);
  TokenizerTrainOptions o;
  o.vocab_size = 300;
  o.num_sentinels = 8;
  std::vector<std::string> few(docs_.begin(), docs_.begin() + 1500);
  Tokenizer other = Tokenizer::from_model(Tokenizer::train(few, o), "other.model");
  expect_error([&] { RoutingVocab::load(path, other); },
               {"routing vocabulary " + path + " was built with another tokenizer",
                format_hash(tokenizer_->hash()), format_hash(other.hash()),
                "rebuild it with mowe_vocab --config"});
  // An intact model that was replaced is not reported as damaged.
  EXPECT_EQ(RoutingVocab::load(path).tokenizer_damage(other), "");
  EXPECT_THROW(RoutingVocab::load((dir_ / "missing.pb").string()), Error);
}

// A damaged SentencePiece model is named as damaged: when it no longer parses, and when it still
// loads with most of the pieces the vocabulary recorded. Never "built with another tokenizer:
// rebuild it", which would bake the damage into a new vocabulary.
TEST_F(RoutingVocabTest, DamagedTokenizerModelIsNamedAsDamaged) {
  const std::string model = (dir_ / "damaged.model").string();
  const std::string vocab = (dir_ / "vocab_of_intact_model.pb").string();
  vocab_->save(vocab);
  const std::string good = tokenizer_->model();

  write_file_atomically(model, "\xff\xff\xff not a model");
  expect_error([&] { Tokenizer::load(model); },
               {"SentencePiece model " + model + " is not a valid SentencePiece model", "damaged",
                "mowe_vocab --config", "--retrain"});

  // One flipped bit that SentencePiece still accepts (a score or a piece's byte).
  bool found = false;
  for (size_t at = good.size() / 2; at < good.size() && !found; ++at) {
    std::string bad = good;
    bad[at] ^= 0x01;
    write_file_atomically(model, bad);
    try {
      Tokenizer damaged = Tokenizer::load(model);
      found = damaged.vocab_size() == tokenizer_->vocab_size();
      if (!found) continue;
      expect_error(
          [&] { RoutingVocab::load(vocab, damaged); },
          {"SentencePiece model " + model + " looks damaged: its hash is " +
               format_hash(damaged.hash()) + ", not the " + format_hash(tokenizer_->hash()) +
               " routing vocabulary " + vocab + " recorded",
           "of its 600 pieces are the recorded ones",
           "retrain both with mowe_vocab --config <config> --retrain"});
    } catch (const Error&) {
      // This flip breaks the model outright: try the next byte.
    }
  }
  EXPECT_TRUE(found) << "no single flipped bit left the model loadable";

  // Cut short: refused either by SentencePiece or by the recorded blocks, as damage.
  write_file_atomically(model, good.substr(0, good.size() - 100));
  std::string what = "(accepted)";
  try {
    RoutingVocab::load(vocab, Tokenizer::load(model));
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find(model), std::string::npos) << what;
  EXPECT_NE(what.find("damaged"), std::string::npos) << what;
}

TEST(Words, LowerCasedAndSplitOnPunctuation) {
  EXPECT_EQ(split_words("Alan Mathison_Turing's mother-in-law, AT&T 1912"),
            (std::vector<std::string>{"alan", "mathison", "turing", "s", "mother", "in", "law",
                                      "at", "t", "1912"}));
  EXPECT_EQ(split_words("caf\xc3\xa9!"), (std::vector<std::string>{"caf\xc3\xa9"}));
}

}  // namespace
}  // namespace mowe::data
