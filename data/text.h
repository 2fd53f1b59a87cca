// Lines of document text as every corpus reader sees them: UTF-8 validation, trimming, the one
// JSON field a JSON-lines document is read from (text.cc), and the counts of lines read and
// skipped that a reader reports. Shared by the in-memory readers (corpus.h) and the one-file
// document reader (document_reader.h) that they and the streaming loader use.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mowe::data {

struct CorpusStats {
  int64_t lines = 0;                 // lines read (data lines for WordNet)
  int64_t skipped_invalid_utf8 = 0;  // lines dropped because they are not valid UTF-8
  int64_t skipped_malformed = 0;     // WordNet or JSON lines that do not parse
  int64_t bytes = 0;                 // bytes of document text kept
};

// `text` without its leading and trailing spaces and tabs.
std::string_view trim(std::string_view text);
// Drops a '\r' that ends `line` (files written on Windows).
void strip_cr(std::string* line);

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool valid_utf8(std::string_view text);

// The string value of a top-level `field` of one JSON object line, unescaped; false when the
// line is not a JSON object or the field is missing or not a string. Exposed for tests.
bool json_string_field(std::string_view line, std::string_view field, std::string* value);

}  // namespace mowe::data
