// Rules relating config fields, and how they report: a rule reads the whole Config and returns
// the first field it refuses, or nothing. runtime/config knows only the generic checks (every
// value against the schema's bounds); each module owns the rules about its own fields
// (model/config_rules.h, data/config_rules.h) and launch/train/config_rules.h assembles them all
// into the one validation every program runs.
//
//   config::Result check_vocabulary(const config::Config& c) {
//     if (c.model().vocab_size() >= c.data().sp_vocab_size()) return std::nullopt;
//     return config::violation("model.vocab_size", "model.vocab_size = ... must be >= ...");
//   }
#pragma once

#include <optional>
#include <span>
#include <string>

#include "runtime/proto/config.pb.h"

namespace mowe::config {

// A refused config: `path` is the field to blame (for locating it in the config file or the
// --set that set it), `message` the full one-line text naming it.
struct Violation {
  std::string path;
  std::string message;
};

// What a rule finds: the first violation, or nullopt when the config satisfies it.
using Result = std::optional<Violation>;

inline Result violation(const std::string& path, const std::string& message) {
  return Violation{path, message};
}

// A rule relating fields. Rules run in order and the first violation wins, so a rule may assume
// the schema's bounds and the rules before it hold.
using Rule = Result (*)(const Config&);
using Rules = std::span<const Rule>;

// Every field (set or default) against the schema's bounds: ranges, finite numbers, element
// counts of repeated fields.
Result check_schema_bounds(const Config& config);

// The schema's bounds, then `rules` in order: the first violation.
Result find_violation(const Config& config, Rules rules);

}  // namespace mowe::config
