// The rules about the model section of a config: MoWE layer indices, the routing vocabulary and
// its buckets, sizes that must fit 32-bit expert indices and 64-bit counts, relative-position
// buckets, the embedding's vocabulary. launch/train/config_rules.h runs them with every other
// module's rules in one validation step.
#pragma once

#include <string>
#include <vector>

#include "runtime/config/rules.h"

namespace mowe::model {

// In the order they run; each names the model field to blame (some compare it with data fields:
// the routing vocabulary and the embedding start with the SentencePiece pieces).
config::Rules config_rules();

// Settings the rules accept that waste what a user pays for: one line each, naming the field, the
// exact cost and the fix. Today: buckets with more experts than routing ids, whose extra experts
// are allocated and counted but never receive a token. Programs log them at start-up.
std::vector<std::string> config_warnings(const config::Config& config);

}  // namespace mowe::model
