// Files one program derives for the others: the routing vocabulary (mowe_vocab) and the dispatch
// plan (mowe_plan). Both are framed files (runtime/checkpoint/framed_file.h: a magic, the format
// version, the payload's length and CRC32C ahead of the payload), so a flipped bit or a cut-off
// copy is refused instead of silently changing a routing decision. They are cheap to rebuild, so
// there is one format version, and every refusal names the file, says what is wrong and gives the
// command that writes it anew:
//
//   dispatch plan runs/x/plan.pb is damaged or truncated (checksum mismatch: ...): rebuild it
//   with mowe_plan --config configs/x.textproto --world-size 4 --out runs/x/plan.pb
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mowe::data {

struct DerivedFile {
  const char* what;        // how messages name the kind of file: "routing vocabulary"
  std::string_view magic;  // 8 bytes at the start of the file
  uint32_t version;        // the format version this build writes and reads
  const char* field;       // the config field that names the file: "data.routing_vocab"
};

// Writes the framed payload atomically.
void write_derived_file(const DerivedFile& kind, const std::string& path,
                        const std::string& payload);

// The payload of `path` once its frame checks out; otherwise throws Error
// "<what> <path> <what is wrong>: rebuild it with <rebuild>". Files of format version 1 were bare
// protobufs whose first field is format_version = 1; they are recognised by those two bytes and
// refused as written by an older version. A path that cannot be opened as a file (a directory,
// no permission) is refused naming the config field.
std::string read_derived_file(const DerivedFile& kind, const std::string& path,
                              const std::string& rebuild);

// The message for a file whose checksum matches but whose contents are unusable (they do not
// parse, or contradict themselves): "<what> <path> <problem>: rebuild it with <rebuild>".
std::string derived_file_problem(const DerivedFile& kind, const std::string& path,
                                 const std::string& problem, const std::string& rebuild);

}  // namespace mowe::data
