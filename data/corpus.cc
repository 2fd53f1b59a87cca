#include "data/corpus.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/document_reader.h"
#include "runtime/hash.h"
#include "runtime/check.h"

namespace mowe::data {
namespace {

std::ifstream open_or_throw(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(fmt::format("cannot open {} {}: {}", what, path, std::strerror(errno)));
  return in;
}

// "Alan_Mathison_Turing" -> "Alan Mathison Turing"; "beautiful(a)" -> "beautiful".
std::string lemma_text(std::string_view word) {
  if (!word.empty() && word.back() == ')') {
    size_t open = word.rfind('(');
    if (open != std::string_view::npos && open > 0) word = word.substr(0, open);
  }
  std::string out(word);
  for (char& c : out)
    if (c == '_') c = ' ';
  return out;
}

// One data.* line: offset lex_filenum ss_type w_cnt(hex) {word lex_id}... p_cnt ... | gloss.
bool parse_synset_line(const std::string& line, Synset* synset) {
  size_t bar = line.find(" | ");
  if (bar == std::string::npos) return false;
  std::istringstream fields(line.substr(0, bar));
  std::string offset, lex_filenum, ss_type, w_cnt;
  if (!(fields >> offset >> lex_filenum >> ss_type >> w_cnt) || ss_type.size() != 1) return false;
  int count = 0;
  try {
    count = std::stoi(w_cnt, nullptr, 16);
  } catch (const std::exception&) {
    return false;
  }
  if (count <= 0) return false;
  synset->pos = ss_type[0];
  synset->lemmas.clear();
  for (int i = 0; i < count; ++i) {
    std::string word, lex_id;
    if (!(fields >> word >> lex_id)) return false;
    synset->lemmas.push_back(lemma_text(word));
  }
  synset->gloss = std::string(trim(std::string_view(line).substr(bar + 3)));
  return true;
}

}  // namespace

std::vector<Synset> read_wordnet(const std::string& dir, CorpusStats* stats) {
  CorpusStats local;
  if (!stats) stats = &local;
  std::vector<Synset> synsets;
  for (const char* name : {"data.noun", "data.verb", "data.adj", "data.adv"}) {
    std::string path = (std::filesystem::path(dir) / name).string();
    if (!std::filesystem::exists(path)) {
      throw UserError(fmt::format(
          "WordNet file {} is missing: install the Debian package wordnet-base "
          "(apt-get install wordnet-base, or run launch/setup.sh), or point data.wordnet_dir at a "
          "WordNet 3.0 database",
          path));
    }
    std::ifstream in = open_or_throw(path, "WordNet file");
    std::string line;
    Synset synset;
    while (std::getline(in, line)) {
      strip_cr(&line);
      if (line.empty() || line[0] == ' ') continue;  // license header lines start with spaces
      ++stats->lines;
      if (!valid_utf8(line)) {
        ++stats->skipped_invalid_utf8;
        continue;
      }
      if (!parse_synset_line(line, &synset)) {
        ++stats->skipped_malformed;
        continue;
      }
      synsets.push_back(synset);
    }
  }
  return synsets;
}

std::string synset_document(const Synset& synset) {
  std::string doc = synset.lemmas.empty() ? std::string() : synset.lemmas[0];
  if (synset.lemmas.size() > 1) {
    doc += " (";
    for (size_t i = 1; i < synset.lemmas.size(); ++i) {
      if (i > 1) doc += ", ";
      doc += synset.lemmas[i];
    }
    doc += ")";
  }
  doc += ": ";
  doc += synset.gloss;
  return doc;
}

Corpus wordnet_corpus(const std::string& dir) {
  Corpus corpus;
  corpus.source = fmt::format("WordNet in {}", dir);
  for (const Synset& s : read_wordnet(dir, &corpus.stats)) {
    corpus.documents.push_back(synset_document(s));
    corpus.stats.bytes += corpus.documents.back().size();
  }
  return corpus;
}

namespace {

// Every document of the files `spec` names, in file order.
Corpus read_files(const std::string& spec, DocumentReader::Format format,
                  const std::string& text_field, const char* kind,
                  const char* field = "data.corpus_path", int64_t max_documents = 0) {
  const std::vector<std::string> files = resolve_corpus_files(spec, field);
  const int64_t n = static_cast<int64_t>(files.size());
  const int64_t per_file = max_documents > 0 ? (max_documents + n - 1) / n : 0;
  Corpus corpus;
  corpus.source = files.size() == 1 ? fmt::format("{} file {}", kind, files[0])
                                    : fmt::format("{} {} files of {}", files.size(), kind, spec);
  if (format == DocumentReader::Format::kJsonl)
    corpus.source += fmt::format(" (field \"{}\")", text_field);
  std::string document;
  for (const std::string& file : files) {
    if (max_documents > 0 && static_cast<int64_t>(corpus.documents.size()) >= max_documents) break;
    DocumentReader reader(file, format, text_field);
    const int64_t room = max_documents - static_cast<int64_t>(corpus.documents.size());
    const int64_t quota = per_file == 0 ? -1 : std::min(per_file, room);
    for (int64_t k = 0; (quota < 0 || k < quota) && reader.next(&document); ++k)
      corpus.documents.push_back(document);
    const CorpusStats& s = reader.stats();
    corpus.stats.lines += s.lines;
    corpus.stats.skipped_invalid_utf8 += s.skipped_invalid_utf8;
    corpus.stats.skipped_malformed += s.skipped_malformed;
    corpus.stats.bytes += s.bytes;
  }
  return corpus;
}

}  // namespace

Corpus read_text_corpus(const std::string& path, int64_t max_documents) {
  return read_files(path, DocumentReader::Format::kText, "", "text", "data.corpus_path",
                    max_documents);
}

Corpus read_jsonl_corpus(const std::string& path, const std::string& text_field,
                         int64_t max_documents) {
  return read_files(path, DocumentReader::Format::kJsonl, text_field, "JSON-lines",
                    "data.corpus_path", max_documents);
}

Corpus read_validation_corpus(const config::DataConfig& config) {
  // Held-out documents that are also trained on would make the validation loss meaningless.
  if (config.corpus() == config::DataConfig::TEXT || config.corpus() == config::DataConfig::JSONL) {
    std::vector<std::string> train;
    for (const std::string& f : resolve_corpus_files(config.corpus_path(), "data.corpus_path"))
      train.push_back(std::filesystem::weakly_canonical(f).string());
    std::sort(train.begin(), train.end());
    for (const std::string& f :
         resolve_corpus_files(config.validation_path(), "data.validation_path")) {
      const std::string canonical = std::filesystem::weakly_canonical(f).string();
      if (std::binary_search(train.begin(), train.end(), canonical))
        throw UserError(
            fmt::format("data.validation_path names {}, which data.corpus_path = \"{}\" "
                        "also trains on: keep held-out files out of the corpus",
                        f, config.corpus_path()));
    }
  }
  const bool text = config.corpus() == config::DataConfig::TEXT;
  Corpus corpus =
      read_files(config.validation_path(),
                 text ? DocumentReader::Format::kText : DocumentReader::Format::kJsonl,
                 config.jsonl_text_field(), text ? "text" : "JSON-lines", "data.validation_path");
  MOWE_REQUIRE(!corpus.documents.empty(), "data.validation_path: {} holds no document",
               corpus.source);
  return corpus;
}

Corpus read_corpus(const config::DataConfig& config, int64_t max_documents) {
  Corpus corpus;
  if (max_documents > 0 && config.corpus() != config::DataConfig::TEXT &&
      config.corpus() != config::DataConfig::JSONL)
    throw UserError(
        fmt::format("a sample of {} documents is for TEXT and JSONL corpora, but "
                    "data.corpus = {}",
                    max_documents, config::DataConfig::Corpus_Name(config.corpus())));
  switch (config.corpus()) {
    case config::DataConfig::TEXT:
      corpus = read_text_corpus(config.corpus_path(), max_documents);
      break;
    case config::DataConfig::JSONL:
      corpus = read_jsonl_corpus(config.corpus_path(), config.jsonl_text_field(), max_documents);
      break;
    case config::DataConfig::SYNTHETIC:
      throw UserError("data.corpus SYNTHETIC has no documents: its examples are drawn, not read");
    default:
      corpus = wordnet_corpus(config.wordnet_dir());
      break;
  }
  const CorpusStats& s = corpus.stats;
  if (s.skipped_invalid_utf8 > 0 || s.skipped_malformed > 0) {
    spdlog::warn(
        "[data] {}: skipped {} lines that are not valid UTF-8 and {} malformed lines of {}",
        corpus.source, s.skipped_invalid_utf8, s.skipped_malformed, s.lines);
  }
  MOWE_REQUIRE(!corpus.documents.empty(),
               "{} holds no document ({} lines read: {} not valid UTF-8, {} malformed)",
               corpus.source, s.lines, s.skipped_invalid_utf8, s.skipped_malformed);
  return corpus;
}

Split split_corpus(std::vector<std::string> documents, double validation_fraction, uint64_t seed) {
  Split split;
  for (std::string& doc : documents) {
    double u = static_cast<double>(hash_bytes(doc, seed) >> 11) * 0x1.0p-53;
    (u < validation_fraction ? split.validation : split.train).push_back(std::move(doc));
  }
  return split;
}

}  // namespace mowe::data
