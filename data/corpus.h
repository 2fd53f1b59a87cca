// Corpus readers: the embedded WordNet corpus (one document per synset: lemma names, gloss and
// examples), plain-text files (one document per blank-line separated paragraph) and JSON-lines
// files (one document per line). Lines that are not valid UTF-8 are skipped and counted, never a
// crash; malformed JSON lines likewise. The train/validation split is a seeded hash of each
// document's text, so it does not depend on document order and duplicates never straddle it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/text.h"
#include "runtime/proto/config.pb.h"

namespace mowe::data {

struct Corpus {
  std::string source;  // what was read, for messages: "WordNet 3.0 in /usr/share/wordnet"
  std::vector<std::string> documents;
  CorpusStats stats;
};

// One WordNet synset: lemma names with '_' turned into spaces and adjective markers such as
// "(a)" removed, in database order, and the gloss (definitions, then examples in quotes).
struct Synset {
  char pos = 'n';  // ss_type: n, v, a, s, r
  std::vector<std::string> lemmas;
  std::string gloss;
};

// The four data.* files of a WordNet 3.0 database directory, in the order noun, verb, adj, adv.
// Throws mowe::Error naming the Debian package (wordnet-base) when a file is missing.
std::vector<Synset> read_wordnet(const std::string& dir, CorpusStats* stats = nullptr);

// "Turing (Alan Turing, Alan Mathison Turing): English mathematician who ...".
std::string synset_document(const Synset& synset);

Corpus wordnet_corpus(const std::string& dir);
// Every document of the files `path` names (see resolve_corpus_files), or a sample of
// max_documents as read_corpus takes it.
Corpus read_text_corpus(const std::string& path, int64_t max_documents = 0);
Corpus read_jsonl_corpus(const std::string& path, const std::string& text_field,
                         int64_t max_documents = 0);

// The corpus a DataConfig names (data.corpus, corpus_path, jsonl_text_field, wordnet_dir).
// Throws when it holds no document.
// With max_documents > 0 (TEXT and JSONL only): at most that many, the first
// ceil(max_documents / files) documents of each file, so that every shard is sampled without
// reading any file to its end.
Corpus read_corpus(const config::DataConfig& config, int64_t max_documents = 0);

// The documents of data.validation_path, read like data.corpus_path.
Corpus read_validation_corpus(const config::DataConfig& config);

struct Split {
  std::vector<std::string> train;
  std::vector<std::string> validation;
};

// Document d goes to validation when hash(seed, text) / 2^64 < validation_fraction.
Split split_corpus(std::vector<std::string> documents, double validation_fraction, uint64_t seed);

}  // namespace mowe::data
