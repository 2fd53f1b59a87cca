#include "data/document_reader.h"

#include <string_view>

namespace mowe::data {

DocumentReader::DocumentReader(const std::string& path, Format format, std::string text_field)
    : lines_(path), format_(format), text_field_(std::move(text_field)) {}

bool DocumentReader::next(std::string* document) {
  return format_ == Format::kText ? next_paragraph(document) : next_json_line(document);
}

bool DocumentReader::next_paragraph(std::string* document) {
  document->clear();
  while (lines_.next(&line_)) {
    strip_cr(&line_);
    ++stats_.lines;
    if (!valid_utf8(line_)) {
      ++stats_.skipped_invalid_utf8;
      continue;
    }
    const std::string_view text = trim(line_);
    if (text.empty()) {
      if (document->empty()) continue;
      break;
    }
    if (!document->empty()) *document += ' ';
    *document += text;
  }
  stats_.bytes += static_cast<int64_t>(document->size());
  return !document->empty();
}

bool DocumentReader::next_json_line(std::string* document) {
  std::string text;
  while (lines_.next(&line_)) {
    strip_cr(&line_);
    if (trim(line_).empty()) continue;
    ++stats_.lines;
    if (!valid_utf8(line_)) {
      ++stats_.skipped_invalid_utf8;
      continue;
    }
    // \u escapes can still spell invalid text (NUL, controls): keep only clean UTF-8 documents.
    if (!json_string_field(line_, text_field_, &text) || !valid_utf8(text)) {
      ++stats_.skipped_malformed;
      continue;
    }
    const std::string_view kept = trim(text);
    if (kept.empty()) continue;
    document->assign(kept);
    stats_.bytes += static_cast<int64_t>(kept.size());
    return true;
  }
  return false;
}

}  // namespace mowe::data
