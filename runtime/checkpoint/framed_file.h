// Small self-checking files (a checkpoint's manifest, per-rank state): a magic string, a format
// version, the payload length and its CRC32C ahead of the payload, so a reader can tell a missing,
// truncated, foreign, too new or damaged file apart and say which in one line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/check.h"

namespace mowe::checkpoint {

// Header size: 8-byte magic, u32 version, u64 payload length, u32 CRC32C of the payload.
inline constexpr int64_t kFramedHeaderBytes = 24;

// Writes magic8 (exactly 8 bytes), version, the payload's length and CRC32C (little-endian), then
// the payload, atomically (runtime/files.h).
void write_framed_file(const std::string& path, std::string_view magic8, uint32_t version,
                       const std::string& payload);

// What read_framed_file found wrong, for a caller that words its own message (say, with the
// command that rebuilds the file).
enum class FramedFault {
  kMissing,    // no such file
  kTruncated,  // shorter than its header, or than the payload length the header announces
  kDamaged,    // bytes after the announced payload, or a payload whose CRC32C does not match
  kForeign,    // another magic: not this kind of file (or a damaged magic)
  kTooNew,     // a format version above max_version
};

class FramedFileError : public Error {
 public:
  // what() is "<path>: <detail>".
  FramedFileError(FramedFault fault, const std::string& path, std::string detail,
                  uint32_t version = 0);
  FramedFault fault() const { return fault_; }
  const std::string& detail() const { return detail_; }  // without the path
  uint32_t version() const { return version_; }          // the file's version, for kTooNew

 private:
  FramedFault fault_;
  std::string detail_;
  uint32_t version_;
};

// Returns the payload after checking the magic, the version (<= max_version; stored in *version
// when given), the length and the CRC. Throws FramedFileError "<path>: <what is wrong>" otherwise
// (Error when the file exists but cannot be read).
std::string read_framed_file(const std::string& path, std::string_view magic8, uint32_t max_version,
                             uint32_t* version = nullptr);

}  // namespace mowe::checkpoint
