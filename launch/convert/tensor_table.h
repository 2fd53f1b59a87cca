// The tensor table of an export (__metadata__ mowe.tensors, launch/convert/safetensors_io.h): one
// line per checkpoint tensor in manifest order with its manifest geometry and where it went, so
// that import can place every byte where the checkpoint had it. Also the splitting of the tab- and
// line-separated text that the other metadata values share.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace mowe::convert {

// One checkpoint tensor as the export records it.
struct TableRow {
  std::string name;  // in the checkpoint
  std::string export_name;
  DType dtype = DType::F32;
  Shape shape;  // in the checkpoint
  std::string file;
  int64_t offset = 0, chunk_rows = 0, chunk_stride = 0;
  bool transpose = false;
};

// "name<TAB>export name<TAB>dtype<TAB>shape (comma-separated)<TAB>file<TAB>offset<TAB>chunk_rows
// <TAB>chunk_stride<TAB>transposed (0/1)\n".
std::string table_line(const TableRow& r);

// The rows of a table; Error naming `file`, the key and the line for anything malformed, and
// for a table without rows.
std::vector<TableRow> parse_table(const std::string& text, const std::string& file);

// `s` cut at every `sep` (n separators give n + 1 parts, empty ones included).
std::vector<std::string> split_text(const std::string& s, char sep);

// The non-empty lines of a metadata value.
std::vector<std::string> nonempty_lines(const std::string& s);

// The whole of `text` as a decimal number; false for anything else (also empty text).
template <typename T>
bool parse_number(const std::string& text, T* out) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && p == end && !text.empty();
}

}  // namespace mowe::convert
