// Which blocks are MoWE layers, read from the config: the one definition of "this model has MoWE
// layers" (a routing vocabulary, a routing table, a dispatch plan and expert parameters exist
// only then; buckets configured without MoWE layers allocate nothing).
#pragma once

#include <cstdint>

#include "runtime/proto/config.pb.h"

namespace mowe::model {

// MoWE layers in both stacks together (model.mowe.encoder_layers and decoder_layers).
inline int64_t mowe_layer_count(const config::MoweConfig& mowe) {
  return int64_t(mowe.encoder_layers_size()) + mowe.decoder_layers_size();
}

inline bool has_mowe_layers(const config::MoweConfig& mowe) {
  return mowe_layer_count(mowe) > 0;
}
inline bool has_mowe_layers(const config::ModelConfig& model) {
  return has_mowe_layers(model.mowe());
}
inline bool has_mowe_layers(const config::Config& config) {
  return has_mowe_layers(config.model().mowe());
}

// The block indices of one stack's MoWE layers.
inline const google::protobuf::RepeatedField<int32_t>& stack_mowe_layers(
    const config::MoweConfig& mowe, bool decoder) {
  return decoder ? mowe.decoder_layers() : mowe.encoder_layers();
}

}  // namespace mowe::model
