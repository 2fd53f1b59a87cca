// Routing vocabularies from a word list (data.routing_word_list): the line format, the streamed
// ranking against a brute-force count, the vocabulary's ids and coverage against an independent
// computation on a small corpus, and a generated 1M-line list in bounded memory (time and peak
// RSS printed). A 600-piece SentencePiece model is trained once on a twelfth of WordNet.
#include "data/word_list.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "data/corpus.h"
#include "data/routing_vocab.h"
#include "data/words.h"
#include "runtime/check.h"
#include "tests/util/expect_error.h"

namespace mowe::data {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / fmt::format("mowe_word_list_test_{}", ::getpid());
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::string write_list(const std::string& name, const std::string& text) {
  const std::string path = (temp_dir() / name).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// ---- the line format -------------------------------------------------------------------------

TEST(WordListLine, EntriesFrequenciesAndSkippedLines) {
  WordListStats stats;
  WordListEntry e;
  ASSERT_TRUE(parse_word_list_line("mathematician", &e, &stats));
  EXPECT_EQ(e.text, "mathematician");
  EXPECT_EQ(e.list_frequency, 0);
  ASSERT_TRUE(parse_word_list_line("  New \t", &e, &stats) == false);  // "\t" then no number
  ASSERT_TRUE(parse_word_list_line(" New   York City\t1234\r", &e, &stats));
  EXPECT_EQ(e.text, "New York City");
  EXPECT_EQ(e.list_frequency, 1234);
  EXPECT_FALSE(parse_word_list_line("word\tmany", &e, &stats));
  EXPECT_FALSE(parse_word_list_line("word\t-3", &e, &stats));
  EXPECT_FALSE(parse_word_list_line("word\t12\t7", &e, &stats));
  EXPECT_FALSE(parse_word_list_line("\t12", &e, &stats));
  EXPECT_FALSE(parse_word_list_line("   ", &e, &stats));
  EXPECT_EQ(stats.malformed, 7 - 1);
  EXPECT_FALSE(parse_word_list_line("caf\xc3", &e, &stats));
  EXPECT_EQ(stats.invalid_utf8, 1);
  ASSERT_TRUE(parse_word_list_line("caf\xc3\xa9\t7", &e, &stats));
  EXPECT_EQ(e.text, "caf\xc3\xa9");
}

// ---- the streamed ranking against a brute-force count ----------------------------------------

struct Parsed {
  std::string text;
  int64_t frequency = 0, line = 0, count = 0;
};

// Occurrences of the entry's words in a row in a document's words, counted naively.
int64_t naive_count(const std::string& entry, const std::vector<std::string>& documents) {
  const std::vector<std::string> w = split_words(entry);
  if (w.empty()) return 0;
  int64_t n = 0;
  for (const std::string& doc : documents) {
    const std::vector<std::string> d = split_words(doc);
    for (size_t i = 0; i + w.size() <= d.size(); ++i)
      n += std::equal(w.begin(), w.end(), d.begin() + i);
  }
  return n;
}

// The list's valid lines with naive counts, ranked: count, then frequency, then line.
std::vector<Parsed> naive_ranking(const std::vector<std::string>& lines,
                                  const std::vector<std::string>& documents) {
  std::vector<Parsed> out;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string text = lines[i];
    int64_t frequency = 0;
    if (auto tab = text.find('\t'); tab != std::string::npos) {
      frequency = std::stoll(text.substr(tab + 1));
      text = text.substr(0, tab);
    }
    out.push_back({text, frequency, static_cast<int64_t>(i + 1), naive_count(text, documents)});
  }
  std::stable_sort(out.begin(), out.end(), [](const Parsed& a, const Parsed& b) {
    if (a.count != b.count) return a.count > b.count;
    if (a.frequency != b.frequency) return a.frequency > b.frequency;
    return a.line < b.line;
  });
  return out;
}

const std::vector<std::string> kDocuments = {
    "Alan Turing was an English mathematician; Turing broke codes at Bletchley Park.",
    "A mathematician proves theorems. The mathematician Alan Turing, and ALAN TURING again.",
    "New York City is in New York. new york has a park: Central Park.",
    "Bletchley Park is a park. Park! park? PARK.",
};

// Valid lines only (with single-space entries), so the naive parser above reads them too.
const std::vector<std::string> kLines = {
    "mathematician\t50", "Alan Turing\t900", "park",           "New York\t10",
    "New York City\t3",  "Central Park\t3",  "zebra\t100000",  "Bletchley Park",
    "codes\t7",          "quokka\t100000",   "alan turing\t5", "theorems",
    "English",           "Turing\t2",        "gnu\t3",         "in\t1",
};

TEST(WordListRanking, CountsAndOrderMatchABruteForceInEveryChunking) {
  std::string text;
  for (const std::string& line : kLines) text += line + "\n";
  // Lines to skip, counted: not UTF-8, malformed, more words than a key has pieces.
  text += "bad \xff\xfe line\nword\tmany\n\none two three four five six seven eight nine ten\n";
  const std::string path = write_list("small.txt", text);
  const CorpusWords corpus(kDocuments);
  const std::vector<Parsed> want = naive_ranking(kLines, kDocuments);
  for (int64_t chunk : {1, 3, 100}) {
    for (int64_t keep : {int64_t{4}, int64_t{100}}) {
      // Pass after pass, as the vocabulary builder continues below the last entry it kept.
      std::vector<WordListEntry> got;
      WordListStats stats;
      while (true) {
        stats = {};
        std::vector<WordListEntry> part =
            rank_word_list(path, corpus, keep, got.empty() ? nullptr : &got.back(), &stats, chunk);
        got.insert(got.end(), part.begin(), part.end());
        if (static_cast<int64_t>(part.size()) < keep) break;
      }
      ASSERT_EQ(got.size(), want.size()) << "chunk " << chunk << " keep " << keep;
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got[i].text, want[i].text) << i;
        EXPECT_EQ(got[i].corpus_count, want[i].count) << want[i].text;
        EXPECT_EQ(got[i].list_frequency, want[i].frequency) << want[i].text;
        EXPECT_EQ(got[i].line, want[i].line) << want[i].text;
      }
      EXPECT_EQ(stats.lines, static_cast<int64_t>(kLines.size()) + 4);
      EXPECT_EQ(stats.invalid_utf8, 1);
      EXPECT_EQ(stats.malformed, 2);  // "word\tmany" and the empty line
      EXPECT_EQ(stats.too_many_words, 1);
      EXPECT_EQ(stats.entries, static_cast<int64_t>(kLines.size()));
    }
  }
  // The spot checks a reader can verify by eye.
  EXPECT_EQ(naive_count("park", kDocuments), 8);
  EXPECT_EQ(naive_count("Alan Turing", kDocuments), 3);
}

// A list that repeats its entries: one pass returns `keep` distinct texts, each its best-ranked
// line, so a vocabulary builder needs one pass however many copies there are (before, the kept
// entries were copies of a few texts and every few ids cost another pass over the list).
TEST(WordListRanking, DuplicatesTakeOnePass) {
  std::string text;
  for (int copy = 0; copy < 40; ++copy)
    for (size_t i = 0; i < kLines.size(); ++i) text += kLines[(i + copy) % kLines.size()] + "\n";
  const std::string path = write_list("duplicates.txt", text);
  const CorpusWords corpus(kDocuments);
  const std::vector<Parsed> want = naive_ranking(kLines, kDocuments);
  const int64_t n = static_cast<int64_t>(kLines.size());
  for (int64_t chunk : {int64_t{5}, int64_t{1} << 20}) {
    WordListStats stats;
    const std::vector<WordListEntry> got = rank_word_list(path, corpus, n, nullptr, &stats, chunk);
    ASSERT_EQ(static_cast<int64_t>(got.size()), n) << "chunk " << chunk;
    std::set<std::string> texts;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].text, want[i].text) << i;
      EXPECT_EQ(got[i].corpus_count, want[i].count) << want[i].text;
      texts.insert(got[i].text);
    }
    EXPECT_EQ(static_cast<int64_t>(texts.size()), n);
    EXPECT_EQ(stats.entries, 40 * n);
    EXPECT_GT(stats.duplicates, 0);
    // A later pass below the last entry leaves out every copy of the texts already returned.
    std::unordered_set<uint64_t> taken;
    for (const WordListEntry& e : got) taken.insert(entry_key(e.text));
    WordListStats next_stats;
    EXPECT_TRUE(rank_word_list(path, corpus, n, &got.back(), &next_stats, chunk, &taken).empty());
  }
}

TEST(WordListRanking, BinaryFilesAndHugeLinesAreRefusedNamingTheLine) {
  const CorpusWords corpus(kDocuments);
  WordListStats stats;
  const std::string binary = write_list("binary.bin", std::string("park\nab\0\x01"
                                                                  "cd\x7f\n",
                                                                  13));
  testing::expect_error(
      [&] { rank_word_list(binary, corpus, 10, nullptr, &stats); },
      {"data.routing_word_list " + binary, "line 2", "control byte 0x00", "not a word list"});
  std::string huge = "park\nzebra\n" + std::string(kMaxWordListLineBytes + 1, 'a') + "\n";
  const std::string long_path = write_list("long.txt", huge);
  stats = {};
  testing::expect_error([&] { rank_word_list(long_path, corpus, 10, nullptr, &stats); },
                        {"data.routing_word_list " + long_path, "line 3",
                         std::to_string(kMaxWordListLineBytes + 1) + " bytes",
                         "more than the " + std::to_string(kMaxWordListLineBytes)});
}

TEST(WordListRanking, CompressedListsGiveTheSameRanking) {
  std::string text;
  for (const std::string& line : kLines) text += line + "\n";
  const std::string path = write_list("same.txt", text);
  ASSERT_EQ(std::system(fmt::format("gzip -kf {0} && zstd -qf {0}", path).c_str()), 0);
  const CorpusWords corpus(kDocuments);
  WordListStats a, b, c;
  const auto plain = rank_word_list(path, corpus, 100, nullptr, &a);
  for (const std::string& p : {path + ".gz", path + ".zst"}) {
    WordListStats s;
    const auto got = rank_word_list(p, corpus, 100, nullptr, &s);
    ASSERT_EQ(got.size(), plain.size()) << p;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].text, plain[i].text) << p;
  }
}

// ---- vocabularies, on a tokenizer trained on a twelfth of WordNet ----------------------------

class WordListVocabTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!sentencepiece_available(&why_)) return;
    std::vector<Synset> synsets = read_wordnet("/usr/share/wordnet");
    std::vector<std::string> docs;
    for (size_t i = 0; i < synsets.size(); i += 12) docs.push_back(synset_document(synsets[i]));
    TokenizerTrainOptions o;
    o.vocab_size = 600;
    o.num_sentinels = 8;
    tokenizer_ = new Tokenizer(Tokenizer::from_model(Tokenizer::train(docs, o), "tiny.model"));
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    fs::remove_all(temp_dir());
  }
  void SetUp() override {
    if (!why_.empty()) GTEST_SKIP() << why_;
  }

  static inline std::string why_;
  static inline Tokenizer* tokenizer_ = nullptr;
};

std::vector<int32_t> route(const RoutingTokenizer& table, std::span<const int32_t> t) {
  std::vector<int32_t> ids(t.size());
  table.route(t, ids);
  return ids;
}

TEST_F(WordListVocabTest, IdsAndCoverageMatchAnIndependentComputation) {
  const Tokenizer& tok = *tokenizer_;
  std::string text;
  for (const std::string& line : kLines) text += line + "\n";
  text += "<extra_id_1>\t99999\n";  // a sentinel written out: not a word
  const std::string path = write_list("vocab.txt", text);
  const TokenizedCorpus tokens = tokenize_documents(kDocuments, tok);
  const int32_t v = tok.vocab_size();
  for (int64_t aux : {3, 100}) {
    const RoutingVocab vocab = RoutingVocab::build_from_word_list(
        tok, path, kDocuments, tokens, {.max_routing_ids = v + aux, .case_variants = true});
    // Independently: entries in naive rank order, tokenized as running text; one-piece entries
    // keep their piece, <unk>, sentinels and repeated tokenizations are dropped, the rest get
    // ids V, V+1, ... until `aux` ids are given.
    std::vector<std::string> want_words;
    std::vector<std::vector<int32_t>> want_tokens;
    std::set<std::vector<int32_t>> seen;
    for (const Parsed& p : naive_ranking(kLines, kDocuments)) {
      if (static_cast<int64_t>(want_words.size()) == aux) break;
      std::vector<int32_t> t = tok.encode(p.text);
      if (t.size() < 2 || t.size() > 9 || !seen.insert(t).second) continue;
      if (std::find(t.begin(), t.end(), Tokenizer::kUnkId) != t.end()) continue;
      want_words.push_back(p.text);
      want_tokens.push_back(t);
    }
    const auto& f = vocab.file();
    ASSERT_EQ(f.entries_size(), static_cast<int>(want_words.size())) << aux;
    EXPECT_EQ(vocab.size(), v + static_cast<int32_t>(want_words.size()));
    for (int k = 0; k < f.entries_size(); ++k) {
      EXPECT_EQ(f.entries(k).word(), want_words[k]) << k;
      EXPECT_EQ(std::vector<int32_t>(f.entries(k).tokens().begin(), f.entries(k).tokens().end()),
                want_tokens[k]);
      EXPECT_EQ(f.entries(k).word_count(), naive_count(want_words[k], kDocuments));
    }
    EXPECT_EQ(f.word_list(), path);
    EXPECT_EQ(f.stats().list_lines(), static_cast<int64_t>(kLines.size()) + 1);
    // Coverage without case variants: the share of words (last pieces) whose routing id,
    // by longest-suffix match over these keys, is an entry's.
    std::map<std::vector<int32_t>, int32_t> keys;
    for (size_t k = 0; k < want_tokens.size(); ++k) keys.emplace(want_tokens[k], v + k);
    int64_t words = 0, covered = 0;
    for (int64_t d = 0; d < tokens.num_documents(); ++d) {
      auto doc = tokens.document(d);
      for (size_t i = 0; i < doc.size(); ++i) {
        words += tok.starts_word(doc[i]);
        if (i + 1 < doc.size() && !tok.starts_word(doc[i + 1])) continue;
        for (size_t len = 9; len >= 2; --len) {
          if (len > i + 1) continue;
          std::vector<int32_t> s(doc.begin() + (i + 1 - len), doc.begin() + i + 1);
          if (keys.count(s)) {
            ++covered;
            break;
          }
        }
      }
    }
    EXPECT_EQ(f.stats().corpus_words(), words);
    EXPECT_DOUBLE_EQ(f.stats().word_share_without_variants(), double(covered) / words);
    EXPECT_GE(f.stats().word_share_with_variants(), f.stats().word_share_without_variants());
    // "Alan Turing" is one routing id at its last piece; its upper-case form reaches it through
    // a case-variant key when that tokenizes within 9 pieces (else the longest suffix wins).
    const RoutingTokenizer table = vocab.table(true);
    for (int k = 0; k < f.entries_size(); ++k) {
      if (f.entries(k).word() != "Alan Turing") continue;
      EXPECT_EQ(route(table, tok.encode("Alan Turing")).back(), v + k);
      const std::vector<int32_t> upper = tok.encode("ALAN TURING");
      if (upper.size() <= 9) {
        EXPECT_EQ(route(table, upper).back(), v + k);
      }
    }
    // Frequencies: raw text, specials never.
    int64_t total = 0;
    for (int64_t c : vocab.frequencies()) total += c;
    EXPECT_EQ(total, static_cast<int64_t>(tokens.tokens.size()));  // no EOS in the documents
  }
}

// Peak resident memory of this process so far, in MB.
double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

// A pseudo-word per index from syllables: unique, several pieces each.
std::string synthetic_word(int64_t i) {
  static const char* kSyllables[] = {"ka", "lo", "mi", "ren", "sa", "tu",  "vo", "zen",
                                     "pa", "ri", "do", "nel", "bo", "qui", "fa", "gor"};
  std::string w;
  do {
    w += kSyllables[i % 16];
    i /= 16;
  } while (i > 0);
  return w;
}

// A list of copies builds the vocabulary of the list without them; an empty list warns, naming
// the file.
TEST_F(WordListVocabTest, DuplicatesChangeNothingAndAnEmptyListWarns) {
  const Tokenizer& tok = *tokenizer_;
  std::string once, copies;
  for (const std::string& line : kLines) once += line + "\n";
  for (int copy = 0; copy < 50; ++copy) copies += once;
  const std::string once_path = write_list("once.txt", once);
  const std::string copies_path = write_list("copies.txt", copies);
  const TokenizedCorpus tokens = tokenize_documents(kDocuments, tok);
  const RoutingVocabOptions options{.max_routing_ids = tok.vocab_size() + 6, .case_variants = true};
  const RoutingVocab a =
      RoutingVocab::build_from_word_list(tok, once_path, kDocuments, tokens, options);
  const RoutingVocab b =
      RoutingVocab::build_from_word_list(tok, copies_path, kDocuments, tokens, options);
  ASSERT_EQ(a.file().entries_size(), b.file().entries_size());
  ASSERT_GT(a.file().entries_size(), 0);
  for (int i = 0; i < a.file().entries_size(); ++i)
    EXPECT_EQ(a.file().entries(i).word(), b.file().entries(i).word()) << i;
  EXPECT_EQ(a.file().variant_keys_size(), b.file().variant_keys_size());

  std::ostringstream log;
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  const std::string empty = write_list("empty.txt", "");
  const RoutingVocab none =
      RoutingVocab::build_from_word_list(tok, empty, kDocuments, tokens, options);
  spdlog::set_default_logger(previous);
  EXPECT_EQ(none.file().entries_size(), 0);
  EXPECT_NE(log.str().find("data.routing_word_list " + empty + ": no auxiliary word"),
            std::string::npos)
      << log.str();
}

TEST_F(WordListVocabTest, MillionLineListInBoundedMemory) {
  // 1M lines: pseudo-words, every fifth a two-word name, a Zipf-like frequency column; a few
  // damaged lines. The corpus mentions some of them.
  const int64_t n = 1'000'000;
  const std::string path = (temp_dir() / "million.txt").string();
  {
    std::ofstream out(path, std::ios::binary);
    for (int64_t i = 0; i < n; ++i) {
      if (i % 100'000 == 7) {
        out << "bad\xff\n";
        continue;
      }
      std::string entry = synthetic_word(i);
      if (i % 5 == 0) entry += " " + synthetic_word(i / 5 + 3);
      out << entry << '\t' << 1'000'000'000 / (i + 1) << '\n';
    }
  }
  std::vector<std::string> docs;
  for (int64_t i = 0; i < 2000; ++i)
    docs.push_back(fmt::format("The {} met {} near {}.", synthetic_word(i * 37),
                               synthetic_word(i * 11 + 5), synthetic_word(i)));
  const TokenizedCorpus tokens = tokenize_documents(docs, *tokenizer_);
  const double rss_before = peak_rss_mb();
  for (int64_t ids : {int64_t{100'000}, int64_t{1} << 20}) {
    const auto t0 = std::chrono::steady_clock::now();
    const RoutingVocab vocab = RoutingVocab::build_from_word_list(
        *tokenizer_, path, docs, tokens, {.max_routing_ids = ids, .case_variants = true});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto& s = vocab.file().stats();
    EXPECT_EQ(s.list_lines(), n);
    EXPECT_EQ(s.list_invalid_utf8(), 10);
    EXPECT_EQ(s.candidate_words(), n - 10);
    EXPECT_GT(s.occurring_words(), 1000);
    // The entries are distinct; those of more than 9 pieces (long pseudo-words in a 600-piece
    // model) are dropped, the rest fill the vocabulary up to the limit.
    const int64_t aux = vocab.file().entries_size();
    EXPECT_EQ(vocab.size(), tokenizer_->vocab_size() + aux);
    EXPECT_EQ(s.dropped_duplicate(), 0);
    if (ids == 100'000) {
      EXPECT_EQ(vocab.size(), ids);
    }
    if (ids > 100'000) {
      EXPECT_EQ(s.dropped_over_limit(), 0);
      EXPECT_EQ(aux + s.single_piece_words() + s.dropped_too_long() + s.dropped_unknown() +
                    s.dropped_special(),
                n - 10);
    }
    // The entries the corpus contains come first, in corpus order.
    for (int k = 1; k < vocab.file().entries_size(); ++k)
      ASSERT_GE(vocab.file().entries(k - 1).word_count(), vocab.file().entries(k).word_count());
    std::printf(
        "1M-line word list, limit %lld -> %lld routing ids (%lld auxiliary, %lld case-variant "
        "keys, %lld too long): %.1f s, peak RSS %.0f MB (%.0f MB before the build)\n",
        static_cast<long long>(ids), static_cast<long long>(vocab.size()),
        static_cast<long long>(aux), static_cast<long long>(vocab.file().variant_keys_size()),
        static_cast<long long>(s.dropped_too_long()), seconds, peak_rss_mb(), rss_before);
  }
}

}  // namespace
}  // namespace mowe::data
