// mowe_convert's read-only commands on a checkpoint directory (docs/checkpoints.md): inspect
// (what it holds, parameter counts per component), verify (every CRC and size, listing every
// problem) and dump (one tensor's values, exactly). None of them builds the model or holds more
// than one chunk of a tensor in memory.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "launch/train/checkpoint_files.h"
#include "launch/train/proto/train_state.pb.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/proto/checkpoint.pb.h"

namespace mowe::convert {

// Rank files: their name, magic and version are launch/train/checkpoint_files.h's, named here
// too for the tools' callers.
using train::kRankMagic;
using train::kRankVersion;
using train::rank_file_name;

// A checkpoint's manifest, read and validated (framing and CRC, protobuf, version, tensor
// geometry) without opening the data files, so a checkpoint with a damaged data file can still
// be inspected. Errors name manifest.pb.
struct ManifestView {
  std::string dir;
  std::string manifest_path;
  checkpoint::CheckpointManifest manifest;
  checkpoint::Layout layout;
};
ManifestView read_manifest(const std::string& dir);

// The manifest's training state (user_state); Error naming the manifest when it does not parse.
train::TrainStateProto train_state(const ManifestView& view);

// Prints the step, versions, world size, fingerprints, training state, a config summary,
// parameter counts per component, optimizer state sizes and the tensor table.
void inspect(const ManifestView& view, std::ostream& out);

struct VerifyReport {
  int64_t tensors = 0;                // tensors whose every chunk was checked and matched
  int64_t bytes = 0;                  // bytes of tensor data read and matched
  int64_t num_problems = 0;           // all problems found
  std::vector<std::string> problems;  // the first max_problems of them, one line each
};

// Checks the manifest, every data file's size, every chunk's CRC32C and every rank file (that it
// exists, is intact and agrees with the manifest's training state). Reads in bounded pieces and
// goes on after a problem, so one run lists them all (up to max_problems lines).
VerifyReport verify(const std::string& dir, size_t max_problems);

// Prints "<name> <dtype> <shape>" and then every value (or the first `limit`; -1 = all), one per
// line, with enough digits to give back the exact value (9 significant digits for f32 and bf16,
// 17 for f64). Reads the tensor chunk by chunk, each CRC-checked.
void dump(const std::string& dir, const std::string& tensor, int64_t limit, std::ostream& out);

// 1234567 -> "1,234,567".
std::string grouped(int64_t n);

}  // namespace mowe::convert
