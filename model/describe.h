// Analytic size and cost of a configured model, computed from the config alone (nothing is
// allocated), so a user can size a 31B-parameter job on a laptop:
//   mowe_pretrain --config configs/base.textproto --describe
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/proto/config.pb.h"

namespace mowe::model {

struct ModelSize {
  struct Component {
    std::string name;
    int64_t params = 0;
  };
  std::vector<Component> dense;  // embedding, output projection, encoder, decoder, ...
  struct Bucket {
    int64_t experts = 0, expert_d_ff = 0, params = 0;
    config::Activation activation = config::GELU;  // the bucket's expert form
    int64_t flops_per_token = 0;                   // forward FLOPs of one expert on one token
    int64_t routing_ids = 0;                       // ids the bucket covers
    // Experts no routing id reaches (more experts than ids) and their parameters: allocated,
    // counted in `params`, never trained.
    int64_t unreachable_experts = 0, unreachable_params = 0;
  };
  std::vector<Bucket> buckets;
  int64_t dense_params = 0;
  int64_t expert_params = 0;  // counted once when shared across MoWE layers
  // The part of expert_params that no routing id reaches (Bucket::unreachable_params, per layer
  // where experts are not shared).
  int64_t unreachable_expert_params = 0;
  int64_t total_params() const { return dense_params + expert_params; }
  // Forward FLOPs of the dense part, 2 per multiply-add, MoWE layers excluded. Attention scores
  // and mixing are counted over the configured lengths (input_length keys for the encoder and
  // cross-attention, target_length for the decoder). Cross-attention's K and V projections run
  // once per encoder token and decoder block, so they are an encoder-token cost here.
  int64_t encoder_flops_per_token = 0;  // encoder blocks + every decoder block's cross K/V
  int64_t decoder_flops_per_token = 0;  // decoder blocks (cross Q/O, scores) + output projection
  // input_length * encoder_flops_per_token + target_length * decoder_flops_per_token.
  int64_t dense_flops_per_sequence = 0;
};

// input_length and target_length size the attention FLOPs.
ModelSize describe(const config::ModelConfig& config, int64_t input_length, int64_t target_length);

// A human-readable report: one line per component, totals, FLOPs.
std::string describe_report(const ModelSize& size);

}  // namespace mowe::model
