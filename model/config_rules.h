// The rules about the model section of a config: MoWE layer indices, the routing vocabulary and
// its buckets, sizes that must fit 32-bit expert indices and 64-bit counts, relative-position
// buckets, the embedding's vocabulary. launch/train/config_rules.h runs them with every other
// module's rules in one validation step.
#pragma once

#include "runtime/config/rules.h"

namespace mowe::model {

// In the order they run; each names the model field to blame (some compare it with data fields:
// the routing vocabulary and the embedding start with the SentencePiece pieces).
config::Rules config_rules();

}  // namespace mowe::model
