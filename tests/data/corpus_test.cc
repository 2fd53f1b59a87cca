// Corpus readers: WordNet parsing, text and JSON-lines input, bad input, the seeded split.
#include "data/corpus.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/check.h"
#include "tests/util/expect_error.h"

namespace mowe::data {
namespace {

using mowe::testing::expect_error;

namespace fs = std::filesystem;

// The files of this process, removed when the test binary exits.
struct TempDir {
  fs::path path = fs::temp_directory_path() / fmt::format("mowe_corpus_test_{}", ::getpid());
  ~TempDir() { fs::remove_all(path); }
};
TempDir temp_dir;

std::string temp_file(const std::string& name, const std::string& bytes) {
  const fs::path& dir = temp_dir.path;
  fs::create_directories(dir);
  std::string path = (dir / name).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(Utf8, AcceptsWellFormedAndRejectsBrokenSequences) {
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("ok \xff then"));      // invalid byte
  EXPECT_FALSE(valid_utf8("\xe2\x96"));          // truncated at the end
}

TEST(Json, FindsTopLevelStringFieldAndUnescapes) {
  std::string v;
  ASSERT_TRUE(json_string_field(
      R"({"id": 3, "meta": {"text": "no"}, "text": "a\"b\n\u00e9\ud83d\ude00"})", "text", &v));
  EXPECT_EQ(v, "a\"b\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_TRUE(
      json_string_field(R"( {"text":"x","list":[1,2,{"a":null}],"f":-1.5e3} )", "text", &v));
  EXPECT_EQ(v, "x");
  EXPECT_FALSE(json_string_field(R"({"text": 3})", "text", &v));
  EXPECT_FALSE(json_string_field(R"({"body": "x"})", "text", &v));
  EXPECT_FALSE(json_string_field(R"({"text": "x")", "text", &v));
  EXPECT_FALSE(json_string_field(R"({"text": "\ud800"})", "text", &v));  // lone surrogate
  EXPECT_FALSE(json_string_field("not json", "text", &v));
}

TEST(WordNet, ParsesTuringSynsetIntoADocument) {
  std::vector<Synset> synsets = read_wordnet("/usr/share/wordnet");
  ASSERT_GT(synsets.size(), 100000u);
  const Synset* turing = nullptr;
  for (const Synset& s : synsets)
    if (!s.lemmas.empty() && s.lemmas[0] == "Turing") turing = &s;
  ASSERT_NE(turing, nullptr);
  EXPECT_EQ(turing->lemmas,
            (std::vector<std::string>{"Turing", "Alan Turing", "Alan Mathison Turing"}));
  EXPECT_EQ(synset_document(*turing),
            "Turing (Alan Turing, Alan Mathison Turing): English mathematician who conceived of "
            "the Turing machine and broke German codes during World War II (1912-1954)");
}

TEST(WordNet, AdjectiveMarkersAreRemoved) {
  Corpus c = wordnet_corpus("/usr/share/wordnet");
  // data.adj: "00020103 00 s 02 outback(a) 0 remote 0 003 ... | inaccessible and ..."
  EXPECT_NE(std::find_if(c.documents.begin(), c.documents.end(),
                         [](const std::string& d) {
                           return d.rfind("outback (remote): inaccessible", 0) == 0;
                         }),
            c.documents.end());
  EXPECT_NE(std::find(c.documents.begin(), c.documents.end(),
                      "used to (wont to): in the habit; \"I am used to hitchhiking\"; \"you'll "
                      "get used to the idea\"; \"...was wont to complain that this is a cold "
                      "world\"- Henry David Thoreau"),
            c.documents.end());
  EXPECT_EQ(c.stats.skipped_invalid_utf8, 0);
  EXPECT_EQ(c.stats.skipped_malformed, 0);
}

TEST(WordNet, MissingFilesNameThePackage) {
  expect_error([] { read_wordnet("/nonexistent/wordnet"); }, {"wordnet-base"});
}

TEST(TextCorpus, ParagraphsAreDocumentsAndInvalidLinesAreSkipped) {
  std::string path =
      temp_file("text.txt", "first line\r\nsecond line\n\n\nbad \xff line\nthird\n  \nfourth\n");
  Corpus c = read_text_corpus(path);
  EXPECT_EQ(c.documents, (std::vector<std::string>{"first line second line", "third", "fourth"}));
  EXPECT_EQ(c.stats.skipped_invalid_utf8, 1);
}

TEST(JsonlCorpus, ReadsTheFieldAndCountsBadLines) {
  std::string path = temp_file("c.jsonl",
                               "{\"text\": \"one\"}\n"
                               "{\"text\": \"tw\xff\"}\n"
                               "{broken\n"
                               "\n"
                               "{\"text\": \"two \\u00e9\", \"id\": 2}\n"
                               "{\"other\": \"x\"}\n");
  Corpus c = read_jsonl_corpus(path, "text");
  EXPECT_EQ(c.documents, (std::vector<std::string>{"one", "two \xc3\xa9"}));
  EXPECT_EQ(c.stats.skipped_invalid_utf8, 1);
  EXPECT_EQ(c.stats.skipped_malformed, 2);
}

// Several files (a directory): all documents in file order, or a sample of the first
// ceil(N / files) documents of each file (what mowe_vocab --max-documents reads).
TEST(JsonlCorpus, ReadsADirectoryWholeOrAsASample) {
  for (int f = 0; f < 3; ++f) {
    std::string lines;
    for (int d = 0; d < 4; ++d) lines += fmt::format("{{\"text\": \"f{} d{}\"}}\n", f, d);
    fs::create_directories(temp_dir.path / "shards");
    temp_file(fmt::format("shards/s{}.jsonl", f), lines);
  }
  const std::string dir = (temp_dir.path / "shards").string();
  Corpus all = read_jsonl_corpus(dir, "text");
  ASSERT_EQ(all.documents.size(), 12u);
  EXPECT_EQ(all.documents[0], "f0 d0");
  EXPECT_EQ(all.documents[11], "f2 d3");
  EXPECT_EQ(read_jsonl_corpus(dir, "text", 5).documents,
            (std::vector<std::string>{"f0 d0", "f0 d1", "f1 d0", "f1 d1", "f2 d0"}));
  config::DataConfig config;
  config.set_corpus(config::DataConfig::JSONL);
  config.set_corpus_path(dir);
  EXPECT_EQ(read_corpus(config, 3).documents,
            (std::vector<std::string>{"f0 d0", "f1 d0", "f2 d0"}));
  // Held-out files must not be among the training files.
  config.set_validation_path(dir + "/s1.jsonl");
  expect_error([&] { read_validation_corpus(config); },
               {"data.validation_path names", "s1.jsonl", "also trains on"});
  config.set_validation_path(temp_file("held_out.jsonl", "{\"text\": \"held\"}\n"));
  EXPECT_EQ(read_validation_corpus(config).documents, std::vector<std::string>{"held"});
  config.set_corpus(config::DataConfig::WORDNET);
  expect_error([&] { read_corpus(config, 3); }, {"for TEXT and JSONL corpora"});
}

TEST(ReadCorpus, EmptyCorpusIsAnError) {
  config::DataConfig config;
  config.set_corpus(config::DataConfig::TEXT);
  config.set_corpus_path(temp_file("empty.txt", "\n\n \xff\n"));
  expect_error([&] { read_corpus(config); }, {"holds no document"});
  config.set_corpus_path("/nonexistent/file.txt");
  EXPECT_THROW(read_corpus(config), Error);
}

TEST(Split, IsSeededStableAndNearTheFraction) {
  std::vector<std::string> docs;
  for (int i = 0; i < 20000; ++i) docs.push_back(fmt::format("document {}", i));
  Split a = split_corpus(docs, 0.02, 7);
  Split b = split_corpus(docs, 0.02, 7);
  EXPECT_EQ(a.validation, b.validation);
  EXPECT_NEAR(double(a.validation.size()) / docs.size(), 0.02, 0.004);
  EXPECT_EQ(a.train.size() + a.validation.size(), docs.size());
  // Order does not matter: the decision is a hash of the text.
  std::vector<std::string> reversed(docs.rbegin(), docs.rend());
  Split c = split_corpus(reversed, 0.02, 7);
  EXPECT_EQ(std::set<std::string>(c.validation.begin(), c.validation.end()),
            std::set<std::string>(a.validation.begin(), a.validation.end()));
  EXPECT_NE(split_corpus(docs, 0.02, 8).validation, a.validation);
  EXPECT_TRUE(split_corpus(docs, 0.0, 7).validation.empty());
}

}  // namespace
}  // namespace mowe::data
