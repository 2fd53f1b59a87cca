#include "runtime/checkpoint/framed_file.h"

#include <fcntl.h>

#include <filesystem>

#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/checkpoint/posix_io.h"
#include "runtime/files.h"

namespace mowe::checkpoint {
namespace {

// Explicit byte order, so the files are the same on every host.
void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// The magic as text for messages: "MOWECKPT" names the kind of file.
std::string printable(std::string_view magic) {
  std::string s;
  for (char c : magic) s += (c >= 0x20 && c < 0x7f) ? c : '?';
  return s;
}

}  // namespace

FramedFileError::FramedFileError(FramedFault fault, const std::string& path, std::string detail,
                                 uint32_t version)
    : Error(path + ": " + detail), fault_(fault), detail_(std::move(detail)), version_(version) {}

void write_framed_file(const std::string& path, std::string_view magic8, uint32_t version,
                       const std::string& payload) {
  MOWE_CHECK(magic8.size() == 8, "a framed file's magic has 8 bytes, got '{}'", magic8);
  std::string bytes;
  bytes.reserve(kFramedHeaderBytes + payload.size());
  bytes.append(magic8);
  put_le(&bytes, version, 4);
  put_le(&bytes, payload.size(), 8);
  put_le(&bytes, crc32c(payload.data(), payload.size()), 4);
  bytes.append(payload);
  write_file_atomically(path, bytes);
}

std::string read_framed_file(const std::string& path, std::string_view magic8, uint32_t max_version,
                             uint32_t* version) {
  MOWE_CHECK(magic8.size() == 8, "a framed file's magic has 8 bytes, got '{}'", magic8);
  PosixFile file;
  try {
    file = PosixFile(path, O_RDONLY);
  } catch (const Error&) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      throw FramedFileError(FramedFault::kMissing, path, "missing file");
    throw;
  }
  const int64_t size = file.size();
  if (size < kFramedHeaderBytes)
    throw FramedFileError(
        FramedFault::kTruncated, path,
        fmt::format("truncated: {} bytes, the header needs {}", size, kFramedHeaderBytes));
  char header[kFramedHeaderBytes];
  file.pread_exact(header, sizeof header, 0);
  if (std::string_view(header, 8) != magic8)
    throw FramedFileError(FramedFault::kForeign, path,
                          fmt::format("not a {} file", printable(magic8)));
  const auto file_version = static_cast<uint32_t>(get_le(header + 8, 4));
  if (file_version > max_version)
    throw FramedFileError(
        FramedFault::kTooNew, path,
        fmt::format("format version {}, this build reads up to {}: use a newer mowe", file_version,
                    max_version),
        file_version);
  const uint64_t length = get_le(header + 12, 8);
  const auto stored_crc = static_cast<uint32_t>(get_le(header + 20, 4));
  // Compared before allocating: a damaged length never decides how much memory is taken.
  const auto available = static_cast<uint64_t>(size - kFramedHeaderBytes);
  if (length > available)
    throw FramedFileError(
        FramedFault::kTruncated, path,
        fmt::format("truncated: the header announces {} payload bytes, the file has {}", length,
                    available));
  if (length < available)
    throw FramedFileError(
        FramedFault::kDamaged, path,
        fmt::format("damaged: the header announces {} payload bytes, the file has {} (trailing "
                    "bytes)",
                    length, available));
  std::string payload(length, '\0');
  file.pread_exact(payload.data(), length, kFramedHeaderBytes);
  const uint32_t crc = crc32c(payload.data(), payload.size());
  if (crc != stored_crc)
    throw FramedFileError(
        FramedFault::kDamaged, path,
        fmt::format("damaged: CRC32C of the payload is {:#010x}, the header says {:#010x}", crc,
                    stored_crc));
  if (version) *version = file_version;
  return payload;
}

}  // namespace mowe::checkpoint
