// Documents of one TEXT or JSONL corpus file, read line by line (plain or compressed), with the
// offset where reading resumes after each document: what the in-memory corpus readers and the
// streaming loader share. TEXT: one document per blank-line separated paragraph, its lines
// trimmed and joined by one space. JSONL: one document per line, the string field `text_field`.
// Lines that are not valid UTF-8, and JSON lines that do not parse, are skipped and counted.
#pragma once

#include <cstdint>
#include <string>

#include "data/input_file.h"
#include "data/text.h"

namespace mowe::data {

class DocumentReader {
 public:
  enum class Format { kText, kJsonl };

  DocumentReader(const std::string& path, Format format, std::string text_field = "text");

  // The next document into *document; false at the end of the file.
  bool next(std::string* document);
  // Where reading resumes to return the documents after the last one next() returned: pass it
  // to skip_to() of a new reader of the same file.
  int64_t offset() const { return lines_.offset(); }
  void skip_to(int64_t offset) { lines_.skip_to(offset); }

  const CorpusStats& stats() const { return stats_; }
  const std::string& path() const { return lines_.path(); }

 private:
  bool next_paragraph(std::string* document);
  bool next_json_line(std::string* document);

  LineReader lines_;
  Format format_;
  std::string text_field_;
  std::string line_;
  CorpusStats stats_;
};

}  // namespace mowe::data
