// The whole configuration's validation, assembled where every module is visible: the schema's
// bounds (runtime/config), then the model's rules (model/config_rules.h), the data's
// (data/config_rules.h) and the training section's (here), in that order. Every program and test
// loads its config through these, so each validates the whole config in one step and reports
// every bad field the same way: one line naming the file position or --set argument, the field
// and what is allowed.
//
//   const config::Config cfg = train::load_config(flags.config_path, flags.overrides);
#pragma once

#include <string>
#include <vector>

#include "runtime/config/config.h"
#include "runtime/config/rules.h"

namespace mowe::train {

// Every module's rules relating fields, in the order they run.
config::Rules config_rules();

// config::load_config and friends with config_rules(): parse, apply the --set overrides in
// order, validate, and throw a mowe::Error naming the first refused field.
config::Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
config::Config load_config_text(const std::string& text, const std::string& source,
                                const std::vector<std::string>& overrides = {});
void validate(const config::Config& config);  // throws "config: <message>"
config::Result find_violation(const config::Config& config);

}  // namespace mowe::train
