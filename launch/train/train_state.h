// The one progress record of a training run (after Marian's TrainingState): everything that
// changes from step to step besides parameters and optimizer state. The trainer advances it,
// checkpoints save it, a restore sets it; nothing else counts steps.
#pragma once

#include <cstdint>

#include "data/proto/loader_state.pb.h"
#include "launch/train/proto/train_state.pb.h"

namespace mowe::train {

struct TrainState {
  int64_t step = 0;           // optimizer updates applied so far (the next update is step + 1)
  data::LoaderState loader;   // where the training loader continues
  uint64_t dropout_seed = 0;  // keys every dropout mask with (step, example, site)

  TrainStateProto to_proto() const {
    TrainStateProto p;
    p.set_step(step);
    *p.mutable_loader() = loader;
    p.set_dropout_seed(dropout_seed);
    return p;
  }
  static TrainState from_proto(const TrainStateProto& p) {
    return {.step = p.step(), .loader = p.loader(), .dropout_seed = p.dropout_seed()};
  }
};

}  // namespace mowe::train
