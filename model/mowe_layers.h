// Which blocks are MoWE layers, read from the config: the one definition of "this model has MoWE
// layers" (a routing vocabulary, a routing table, a dispatch plan and expert parameters exist
// only then; buckets configured without MoWE layers allocate nothing).
#pragma once

#include <cstdint>

#include "model/expert_form.h"
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

// The routing ids bucket i covers: its num_routing_ids, or, for a last bucket with 0, every id
// that the unrouted ids and the buckets before it leave (as model/routing_table.h assigns them).
inline int64_t bucket_routing_ids(const config::MoweConfig& mowe, int i) {
  const int64_t own = mowe.buckets(i).num_routing_ids();
  if (own != 0) return own;
  int64_t rest = int64_t(mowe.routing_vocab_size()) - mowe.num_unrouted_ids();
  for (int b = 0; b < i; ++b) rest -= mowe.buckets(b).num_routing_ids();
  return rest > 0 ? rest : 0;
}

// Experts of bucket i that no routing id reaches: the k-th id of a bucket with at least as many
// experts as ids gets the k-th expert, so experts beyond the bucket's ids never see a token and
// never train (the paper's Table 6 gives its second bucket 880 ids for 128 blocks x 7 = 896
// experts).
inline int64_t bucket_unreachable_experts(const config::MoweConfig& mowe, int i) {
  const config::BucketConfig& b = mowe.buckets(i);
  const int64_t experts = int64_t(b.num_blocks()) * b.experts_per_block();
  const int64_t ids = bucket_routing_ids(mowe, i);
  return experts > ids ? experts - ids : 0;
}

// Their parameters, once (experts shared across MoWE layers) or per layer.
inline int64_t bucket_unreachable_params(const config::MoweConfig& mowe, int i, int64_t d_model) {
  return bucket_unreachable_experts(mowe, i) * expert_matrices(bucket_activation(mowe, i)) *
         d_model * mowe.buckets(i).expert_d_ff();
}

}  // namespace mowe::model
