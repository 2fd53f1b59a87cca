// A loader batch as the model's inputs, with the routing the loader thread attached to it.
#pragma once

#include "data/loader.h"
#include "model/t5_model.h"

namespace mowe::train {

// What the loader thread attaches to each batch: both stacks' tokens routed with the plan.
struct BatchRouting {
  model::RoutedTokens encoder, decoder;
};

// Views of a batch's arrays as the model's inputs (no copies); valid while `b` lives.
model::ModelInputs model_inputs(const data::Batch& b);

// Real (non-padding) encoder and decoder tokens of this rank's share of the batch.
struct TokenCounts {
  int64_t encoder = 0, decoder = 0;
  int64_t total() const { return encoder + decoder; }
};
TokenCounts real_tokens(const data::Batch& b);

}  // namespace mowe::train
