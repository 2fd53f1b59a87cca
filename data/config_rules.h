// The rules about the data section of a config: sentinel ids, span corruption (counted with the
// loader's own arithmetic, data/span_lengths.h), corpus kinds and the files they read, streaming,
// the task. launch/train/config_rules.h runs them with every other module's rules in one
// validation step.
#pragma once

#include "runtime/config/rules.h"

namespace mowe::data {

// In the order they run; each names the data field to blame.
config::Rules config_rules();

}  // namespace mowe::data
