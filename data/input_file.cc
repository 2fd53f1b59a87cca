#include "data/input_file.h"

#include <fnmatch.h>
#include <glob.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/check.h"

namespace mowe::data {
namespace fs = std::filesystem;

namespace {

// Problems with the user's files: the message alone, without the source location of a check.
template <typename... Args>
void require(bool ok, fmt::format_string<Args...> format, Args&&... args) {
  if (!ok) throw Error(fmt::format(format, std::forward<Args>(args)...));
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool has_glob_chars(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

std::vector<std::string> files_of_list(const std::string& list, const char* field) {
  LineReader reader(list);
  const fs::path dir = fs::path(list).parent_path();
  std::vector<std::string> files;
  std::string line;
  while (reader.next(&line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    const size_t last = line.find_last_not_of(" \t");
    fs::path p(line.substr(first, last - first + 1));
    if (p.is_relative()) p = dir / p;
    require(fs::is_regular_file(p), "{} = \"@{}\": line {} names {}, which is not a file", field,
            list, reader.line_number(), p.string());
    files.push_back(p.string());
  }
  require(!files.empty(), "{} = \"@{}\": the list names no file", field, list);
  return files;
}

}  // namespace

std::vector<std::string> resolve_corpus_files(const std::string& spec, const char* field) {
  require(!spec.empty(), "{} is empty: set it to a file, a directory, a glob or @list", field);
  if (spec[0] == '@') return files_of_list(spec.substr(1), field);
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(spec, ec)) {
    for (const auto& entry : fs::directory_iterator(spec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name[0] == '.' || !entry.is_regular_file()) continue;
      files.push_back(entry.path().string());
    }
    require(!files.empty(), "{} = \"{}\": the directory holds no file", field, spec);
  } else if (has_glob_chars(spec) && !fs::exists(spec, ec)) {
    glob_t g{};
    const int rc = ::glob(spec.c_str(), GLOB_ERR, nullptr, &g);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i)
      if (fs::is_regular_file(g.gl_pathv[i])) files.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    require(!files.empty(), "{} = \"{}\": the pattern matches no file", field, spec);
  } else {
    require(fs::is_regular_file(spec, ec), "{} = \"{}\": no such file", field, spec);
    files.push_back(spec);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// One way of turning the bytes on disk into the file's contents.
class InputFile::Decoder {
 public:
  explicit Decoder(std::string path) : path_(std::move(path)) {
    file_ = std::fopen(path_.c_str(), "rb");
    require(file_ != nullptr, "cannot open {}: {}", path_, std::strerror(errno));
  }
  virtual ~Decoder() {
    if (file_) std::fclose(file_);
  }
  // Up to n bytes of contents; 0 at the end. `offset` is where the contents are, for messages.
  virtual size_t read(char* out, size_t n, int64_t offset) = 0;

 protected:
  // Raw bytes of the file into in_ (keeps unread ones); false when the file has no more.
  bool refill() {
    if (in_pos_ < in_len_) std::memmove(in_.data(), in_.data() + in_pos_, in_len_ - in_pos_);
    in_len_ -= in_pos_;
    in_pos_ = 0;
    const size_t got = std::fread(in_.data() + in_len_, 1, in_.size() - in_len_, file_);
    require(!std::ferror(file_), "error reading {}: {}", path_, std::strerror(errno));
    in_len_ += got;
    return got > 0;
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<char> in_ = std::vector<char>(1 << 16);
  size_t in_pos_ = 0, in_len_ = 0;
};

namespace {

class PlainDecoder final : public InputFile::Decoder {
 public:
  using Decoder::Decoder;
  size_t read(char* out, size_t n, int64_t) override {
    const size_t got = std::fread(out, 1, n, file_);
    require(!std::ferror(file_), "error reading {}: {}", path_, std::strerror(errno));
    return got;
  }
};

// gzip, including files of several concatenated gzip members (as `cat a.gz b.gz` makes).
class GzipDecoder final : public InputFile::Decoder {
 public:
  explicit GzipDecoder(std::string path) : Decoder(std::move(path)) {
    require(inflateInit2(&z_, 15 + 32) == Z_OK, "zlib: cannot start decompressing {}", path_);
  }
  ~GzipDecoder() override { inflateEnd(&z_); }

  size_t read(char* out, size_t n, int64_t offset) override {
    size_t produced = 0;
    while (produced < n) {
      if (in_pos_ == in_len_ && !refill()) {
        require(member_done_ || !started_,
                "{} is cut off: the gzip stream ends inside a member after {} bytes of "
                "contents (copy the file again)",
                path_, offset + static_cast<int64_t>(produced));
        return produced;
      }
      if (member_done_) {
        // After a member: another member, or a tail of zero bytes (tape or block padding, which
        // gzip itself ignores); anything else is not gzip data.
        if (static_cast<unsigned char>(in_[in_pos_]) != 0x1f) {
          while (in_pos_ < in_len_ && in_[in_pos_] == 0) ++in_pos_;
          require(in_pos_ == in_len_,
                  "{} has trailing data after its last gzip member (at {} bytes of contents): the "
                  "file is damaged or was appended to",
                  path_, offset + static_cast<int64_t>(produced));
          continue;
        }
        require(inflateReset(&z_) == Z_OK, "zlib: cannot reset the stream of {}", path_);
        member_done_ = false;
      }
      started_ = true;
      z_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      z_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      z_.next_out = reinterpret_cast<Bytef*>(out + produced);
      z_.avail_out = static_cast<uInt>(std::min<size_t>(n - produced, 1u << 30));
      const int rc = inflate(&z_, Z_NO_FLUSH);
      produced = static_cast<size_t>(reinterpret_cast<char*>(z_.next_out) - out);
      in_pos_ = static_cast<size_t>(reinterpret_cast<char*>(z_.next_in) - in_.data());
      if (rc == Z_STREAM_END) {
        member_done_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw Error(fmt::format(
            "{} is not valid gzip data after {} bytes of contents ({}): the "
            "file is damaged or is not gzip-compressed despite its name",
            path_, offset + static_cast<int64_t>(produced), z_.msg ? z_.msg : zError(rc)));
      }
    }
    return produced;
  }

 private:
  z_stream z_{};
  bool member_done_ = false, started_ = false;
};

class ZstdDecoder final : public InputFile::Decoder {
 public:
  explicit ZstdDecoder(std::string path) : Decoder(std::move(path)), z_(ZSTD_createDStream()) {
    require(z_ != nullptr, "zstd: cannot start decompressing {}", path_);
  }
  ~ZstdDecoder() override { ZSTD_freeDStream(z_); }

  size_t read(char* out, size_t n, int64_t offset) override {
    ZSTD_outBuffer o{out, n, 0};
    while (o.pos < n) {
      if (in_pos_ == in_len_ && !refill()) {
        require(frame_done_,
                "{} is cut off: the zstd stream ends inside a frame after {} bytes of "
                "contents (copy the file again)",
                path_, offset + static_cast<int64_t>(o.pos));
        return o.pos;
      }
      ZSTD_inBuffer i{in_.data(), in_len_, in_pos_};
      const size_t rc = ZSTD_decompressStream(z_, &o, &i);
      in_pos_ = i.pos;
      require(!ZSTD_isError(rc),
              "{} is not valid zstd data after {} bytes of contents ({}): the file is damaged "
              "or is not zstd-compressed despite its name",
              path_, offset + static_cast<int64_t>(o.pos), ZSTD_getErrorName(rc));
      frame_done_ = rc == 0;
    }
    return o.pos;
  }

 private:
  ZSTD_DStream* z_;
  bool frame_done_ = true;
};

}  // namespace

InputFile::InputFile(const std::string& path) : path_(path) {
  if (ends_with(path, ".gz"))
    decoder_ = std::make_unique<GzipDecoder>(path);
  else if (ends_with(path, ".zst"))
    decoder_ = std::make_unique<ZstdDecoder>(path);
  else
    decoder_ = std::make_unique<PlainDecoder>(path);
}

InputFile::~InputFile() = default;

size_t InputFile::read(char* out, size_t n) {
  const size_t got = decoder_->read(out, n, offset_);
  offset_ += static_cast<int64_t>(got);
  return got;
}

LineReader::LineReader(const std::string& path) : file_(path), buffer_(1 << 16) {}

bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) {  // a line longer than the buffer
    // A file without line breaks (another kind of file, or one huge record) must not be
    // buffered whole.
    require(buffer_.size() < kMaxLineBytes,
            "{}: the line at {} bytes of contents is longer than {} MiB: this is not a line-based "
            "text or JSON-lines file",
            path(), line_start_, kMaxLineBytes >> 20);
    buffer_.resize(buffer_.size() * 2);
  }
  const size_t got = file_.read(buffer_.data() + end_, buffer_.size() - end_);
  if (got == 0) eof_ = true;
  end_ += got;
  return got > 0;
}

bool LineReader::next(std::string* line) {
  size_t scanned = begin_;
  for (;;) {
    const void* nl = std::memchr(buffer_.data() + scanned, '\n', end_ - scanned);
    if (nl != nullptr) {
      const size_t at = static_cast<size_t>(static_cast<const char*>(nl) - buffer_.data());
      line->assign(buffer_.data() + begin_, at - begin_);
      line_start_ += static_cast<int64_t>(at + 1 - begin_);
      begin_ = at + 1;
      ++lines_;
      return true;
    }
    const size_t seen = end_ - begin_;
    if (!fill()) {
      if (begin_ == end_) return false;
      line->assign(buffer_.data() + begin_, end_ - begin_);
      line_start_ += static_cast<int64_t>(end_ - begin_);
      begin_ = end_;
      ++lines_;
      return true;
    }
    scanned = begin_ + seen;
  }
}

void LineReader::skip_to(int64_t offset) {
  require(offset >= line_start_, "{}: cannot move back from offset {} to {}", path(), line_start_,
          offset);
  while (line_start_ < offset) {
    if (begin_ == end_ && !fill())
      throw Error(
          fmt::format("{} ends at {} bytes, before offset {} where reading should resume: "
                      "the file changed since the position was saved",
                      path(), line_start_, offset));
    const size_t step = static_cast<size_t>(std::min<int64_t>(offset - line_start_, end_ - begin_));
    lines_ += std::count(buffer_.data() + begin_, buffer_.data() + begin_ + step, '\n');
    begin_ += step;
    line_start_ += static_cast<int64_t>(step);
  }
}

}  // namespace mowe::data
