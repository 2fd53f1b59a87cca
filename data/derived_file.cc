#include "data/derived_file.h"

#include <fmt/format.h>

#include <fstream>

#include "runtime/check.h"
#include "runtime/checkpoint/framed_file.h"

namespace mowe::data {
namespace {

// A bare protobuf of format 1 starts with field 1 (varint) = 1: the bytes 0x08 0x01. A framed
// file starts with its magic, whose first byte is a letter, so no single flipped bit turns one
// into the other.
bool written_before_framing(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[2] = {0, 0};
  return in.read(head, 2) && head[0] == 0x08 && head[1] == 0x01;
}

// read_framed_file's detail without its "truncated: " or "damaged: " lead: the message says both.
std::string damage_detail(const checkpoint::FramedFileError& e) {
  std::string detail = e.detail();
  const size_t colon = detail.find(": ");
  if (colon != std::string::npos) detail = detail.substr(colon + 2);
  if (detail.find("CRC32C") != std::string::npos) return "checksum mismatch: " + detail;
  return detail;
}

}  // namespace

void write_derived_file(const DerivedFile& kind, const std::string& path,
                        const std::string& payload) {
  checkpoint::write_framed_file(path, kind.magic, kind.version, payload);
}

std::string derived_file_problem(const DerivedFile& kind, const std::string& path,
                                 const std::string& problem, const std::string& rebuild) {
  return fmt::format("{} {} {}: rebuild it with {}", kind.what, path, problem, rebuild);
}

std::string read_derived_file(const DerivedFile& kind, const std::string& path,
                              const std::string& rebuild) {
  using checkpoint::FramedFault;
  uint32_t version = 0;
  std::string payload;
  try {
    payload = checkpoint::read_framed_file(path, kind.magic, kind.version, &version);
  } catch (const checkpoint::FramedFileError& e) {
    std::string problem;
    switch (e.fault()) {
      case FramedFault::kMissing:
        throw UserError(
            fmt::format("{} {} does not exist: build it with {}", kind.what, path, rebuild));
      case FramedFault::kTruncated:
      case FramedFault::kDamaged:
        problem = fmt::format("is damaged or truncated ({})", damage_detail(e));
        break;
      case FramedFault::kForeign:
        problem = fmt::format("is not a {} file, or its header is damaged", kind.what);
        break;
      case FramedFault::kTooNew:
        // The header has no checksum of its own: a flipped version bit looks like this too.
        problem = fmt::format(
            "has format version {}, this build reads {}: it was written by a newer version of "
            "mowe, or its header is damaged",
            e.version(), kind.version);
        break;
    }
    // Older files have no frame at all (and may be shorter than one).
    if (e.fault() != FramedFault::kDamaged && written_before_framing(path))
      problem = "was written by an older version of mowe (format 1, without a checksum)";
    throw UserError(derived_file_problem(kind, path, problem, rebuild));
  } catch (const Error& e) {  // not a file that opens: a directory, no permission
    throw UserError(
        fmt::format("{} '{}' cannot be read as a {} ({}): set {} to the file, or "
                    "build it with {}",
                    kind.field, path, kind.what, e.what(), kind.field, rebuild));
  }
  if (version != kind.version)
    throw UserError(derived_file_problem(
        kind, path,
        fmt::format("has format version {}, this build reads {}: it was written by an older "
                    "version of mowe, or its header is damaged",
                    version, kind.version),
        rebuild));
  return payload;
}

}  // namespace mowe::data
