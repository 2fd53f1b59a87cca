// Reading corpus files as users have them: many files named by a directory, a glob or a list,
// each plain or compressed (.gz with zlib, .zst with libzstd, chosen by the file name), read in
// blocks so that no file is ever held whole in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mowe::data {

// The files a corpus setting names, sorted by path: a file; a directory (its regular files, not
// recursing, hidden files skipped); a glob pattern ("shards/*.jsonl.gz"); or "@list", a file with
// one path per line (relative paths are relative to the list's directory; blank lines and lines
// starting with '#' skipped; kept in the list's order). Throws mowe::Error naming `field` and the
// setting when nothing matches or a listed file is missing.
std::vector<std::string> resolve_corpus_files(const std::string& spec, const char* field);

// The uncompressed bytes of one file, read forward in blocks.
class InputFile {
 public:
  // Throws mowe::Error naming the file when it cannot be opened.
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // Up to n uncompressed bytes; 0 at the end. Throws mowe::Error naming the file and the
  // uncompressed offset when the data is damaged or cut off.
  size_t read(char* out, size_t n);
  // Uncompressed bytes delivered so far.
  int64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

  class Decoder;  // plain, gzip or zstd

 private:
  std::string path_;
  std::unique_ptr<Decoder> decoder_;
  int64_t offset_ = 0;
};

// Lines of a file (plain or compressed), without their '\n' (a '\r' before it is kept: the
// readers decide what it means).
class LineReader {
 public:
  // Longer lines are refused: they mean a file that is not line-based text.
  static constexpr size_t kMaxLineBytes = size_t{256} << 20;

  explicit LineReader(const std::string& path);

  // The next line into *line; false at the end. A last line without '\n' is still a line.
  bool next(std::string* line);
  // Uncompressed offset of the start of the line next() returns next.
  int64_t offset() const { return line_start_; }
  // Lines returned so far.
  int64_t line_number() const { return lines_; }
  // Moves forward to `offset`, which must be the start of a line at or after offset() (one that
  // offset() returned in an earlier read of the same file). Compressed files are decompressed up
  // to it. Throws when the file ends before it.
  void skip_to(int64_t offset);
  const std::string& path() const { return file_.path(); }

 private:
  bool fill();

  InputFile file_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;  // unread bytes of buffer_
  int64_t line_start_ = 0;
  int64_t lines_ = 0;
  bool eof_ = false;
};

}  // namespace mowe::data
