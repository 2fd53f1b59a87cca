// Small self-checking files (a checkpoint's manifest, per-rank state): a magic string, a format
// version, the payload length and its CRC32C ahead of the payload, so a reader can tell a missing,
// truncated, foreign, too new or damaged file apart and say which in one line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mowe::checkpoint {

// Header size: 8-byte magic, u32 version, u64 payload length, u32 CRC32C of the payload.
inline constexpr int64_t kFramedHeaderBytes = 24;

// Writes magic8 (exactly 8 bytes), version, the payload's length and CRC32C (little-endian), then
// the payload, atomically (runtime/files.h).
void write_framed_file(const std::string& path, std::string_view magic8, uint32_t version,
                       const std::string& payload);

// Returns the payload after checking the magic, the version (<= max_version; stored in *version
// when given), the length and the CRC. Throws Error "<path>: <what is wrong>" otherwise.
std::string read_framed_file(const std::string& path, std::string_view magic8, uint32_t max_version,
                             uint32_t* version = nullptr);

}  // namespace mowe::checkpoint
