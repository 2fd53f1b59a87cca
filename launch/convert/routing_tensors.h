// The routing table as export tensors (mowe.routing.*, launch/convert/safetensors_io.h): built for
// an export from the routing vocabulary of the checkpoint's config, and checked on import against
// the checkpoint's routing_table fingerprint. Both refuse a table whose hash is not the
// checkpoint's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/checkpoint/proto/checkpoint.pb.h"
#include "runtime/config/config.h"
#include "runtime/safetensors/safetensors.h"

namespace mowe::convert {

struct RoutingTensors {
  std::vector<int32_t> bucket_of, expert_of;
  std::vector<int64_t> buckets;  // [B, 4]: routing ids, blocks, experts per block, expert d_ff
};

// The table of `cfg` (its data.routing_vocab must exist), refused unless it matches the
// manifest's routing_vocab and routing_table fingerprints. `dir` names the checkpoint in errors.
RoutingTensors routing_tensors(const config::Config& cfg, const checkpoint::CheckpointManifest& m,
                               const std::string& dir);

// Where a tensor of an import's safetensors files lies: the index of its reader and its entry.
struct TensorSource {
  size_t reader;
  const safetensors::TensorInfo* info;
};

// When the files hold routing tensors: all three are there, well-formed, consistent, and hash to
// the manifest's routing_table fingerprint (the trainer routes with its own table, so edited
// tensors would be ignored). Error naming the file and the tensor otherwise.
void check_routing_tensors(const std::vector<safetensors::Reader>& readers,
                           const std::map<std::string, TensorSource>& where,
                           const checkpoint::CheckpointManifest& m);

}  // namespace mowe::convert
