// A loader batch as the model's inputs, with the routing the loader thread attached to it.
#pragma once

#include <cstdint>
#include <functional>

#include "data/batch.h"
#include "model/dispatch_plan.h"
#include "model/t5_model.h"

namespace mowe::train {

// The loader hook (data::LoaderOptions::prepare) that routes both stacks' tokens of every batch
// with `plan` for `rank` (model::route_batch), on the thread that builds the batch, and attaches
// the result to it as a model::RoutedBatch. `plan` must outlive the loader.
std::function<void(data::Batch&)> route_with_plan(const model::DispatchPlan& plan, int rank,
                                                  int32_t deactivate_above);

// The routing route_with_plan attached to `b`; null when none was (no hook, or no plan).
const model::RoutedBatch* attached_routing(const data::Batch& b);

// Views of a batch's arrays as the model's inputs (no copies), with its attached routing;
// valid while `b` lives. With `device` (an arena of device memory), the token arrays are uploaded
// there instead (queued on the compute stream, no synchronisation); routing ids stay on the host,
// where routing happens.
model::ModelInputs model_inputs(const data::Batch& b, Arena* device = nullptr);

// Real (non-padding) encoder and decoder tokens of this rank's share of the batch.
struct TokenCounts {
  int64_t encoder = 0, decoder = 0;
  int64_t total() const { return encoder + decoder; }
};
TokenCounts real_tokens(const data::Batch& b);

}  // namespace mowe::train
