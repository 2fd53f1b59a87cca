// The form of a bucket's experts: BucketConfig.expert_activation when set, else the MoWE layer's
// model.mowe.expert_activation. Every place that sizes, builds, names or hashes experts asks here,
// so the rule lives in one spot.
//   GELU:       wi [E,C,F], wo [E,F,C]                  two matrices per expert
//   GATED_GELU: wi_gate, wi_linear [E,C,F], wo [E,F,C]  three matrices per expert
#pragma once

#include <vector>

#include "runtime/check.h"
#include "runtime/proto/config.pb.h"

namespace mowe::model {

inline config::Activation bucket_activation(const config::MoweConfig& config, int bucket) {
  MOWE_CHECK(bucket >= 0 && bucket < config.buckets_size(),
             "bucket_activation: bucket {} of {} in model.mowe.buckets", bucket,
             config.buckets_size());
  const config::BucketConfig& b = config.buckets(bucket);
  return b.has_expert_activation() ? b.expert_activation() : config.expert_activation();
}

// One entry per bucket of model.mowe.buckets.
inline std::vector<config::Activation> bucket_activations(const config::MoweConfig& config) {
  std::vector<config::Activation> forms;
  for (int b = 0; b < config.buckets_size(); ++b) forms.push_back(bucket_activation(config, b));
  return forms;
}

// Input matrices per expert: 2 (wi_gate, wi_linear) for GATED_GELU, 1 (wi) for GELU.
inline int expert_input_matrices(config::Activation activation) {
  return activation == config::GATED_GELU ? 2 : 1;
}

// All matrices per expert: the input matrices and wo.
inline int expert_matrices(config::Activation activation) {
  return expert_input_matrices(activation) + 1;
}

}  // namespace mowe::model
