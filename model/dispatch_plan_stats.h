// What a dispatch plan costs, from its expected loads: the per-bucket load imbalance over ranks
// and the all-to-all traffic per step. mowe_plan prints these (--simulate and after writing a
// plan) so that a user can size a 64- or 1024-rank job before asking for it.
#pragma once

#include <cstdint>
#include <string>

#include "model/dispatch_plan.h"
#include "runtime/proto/config.pb.h"

namespace mowe::model {

struct TrafficOptions {
  int64_t d_model = 0;
  int encoder_layers = 0;   // MoWE layers in the encoder stack
  int decoder_layers = 0;   // and in the decoder stack
  int bytes_per_value = 4;  // fp32 activations
  int ranks_per_node = 8;   // for the hierarchical all-to-all's message count
};

// From model.d_model and model.mowe.{encoder,decoder}_layers.
TrafficOptions traffic_options(const config::Config& config, int ranks_per_node);

// Per rank and step, over every MoWE layer of both stacks, forward and backward: each layer
// runs a dispatch and a combine all-to-all forward, and both again (transposed) backward.
struct PlanTraffic {
  double bytes_sent_mean = 0;  // routed activations leaving a rank; a rank's own tokens stay
  double bytes_sent_max = 0;
  int64_t alltoalls = 0;      // 2 (dispatch, combine) x 2 (forward, backward) x MoWE layers
  int64_t messages_flat = 0;  // (N - 1) per all-to-all
  // (L - 1) + (N/L - 1) per all-to-all with L ranks per node; -1 when L does not divide N.
  int64_t messages_hierarchical = 0;
};

// Expected tokens a rank sends in one dispatch and one combine of a stack with `tokens` tokens
// per step: its routed tokens for other ranks, then the outputs of other ranks' tokens.
double tokens_sent(const DispatchPlan& plan, int rank, int64_t tokens);

PlanTraffic plan_traffic(const DispatchPlan& plan, const TrafficOptions& options);

// What every table shares: frequency source, tokens per step, routed share.
std::string format_plan_header(const DispatchPlan& plan);

// The per-bucket table (layout, mean and max tokens per rank, max/mean, capacity) and the
// traffic lines. `contiguous`, when given, is the same plan with BlockAssignment::kContiguous:
// its max/mean is shown beside the balanced one.
std::string format_plan_table(const DispatchPlan& plan, const TrafficOptions& options,
                              const DispatchPlan* contiguous = nullptr);

}  // namespace mowe::model
