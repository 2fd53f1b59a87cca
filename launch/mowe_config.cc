// mowe_config: checks a config and prints it resolved (every default filled in), or prints the
// configuration reference generated from the schema.
//
//   mowe_config --config configs/wordnet_small.textproto --set training.steps=50
//   mowe_config --reference > docs/configuration.md
#include <iostream>

#include "launch/train/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/log.h"

namespace {

const char* kUsage = R"(--config PATH [--set FIELD=VALUE ...]
       mowe_config --reference

Validates a config, applying the --set overrides, and prints it with every default filled in.
Exits with status 2 and a one-line error on stderr when the config is invalid.
  --reference          Print the configuration reference (docs/configuration.md) and exit.
)";

int run(int argc, char** argv) {
  auto flags = mowe::config::parse_common_flags(argc, argv, {"--reference"});
  if (flags.help) {
    std::cout << mowe::config::help_text("mowe_config", kUsage);
    return 0;
  }
  mowe::log::init({.all_ranks = flags.log_all_ranks, .level = flags.log_level});
  if (flags.has("--reference")) {
    std::cout << mowe::config::reference_markdown();
    return 0;
  }
  if (!flags.positional.empty())
    throw mowe::Error("unexpected argument '" + flags.positional[0] + "' (run with --help)");
  auto config = mowe::train::load_config(flags.config_path, flags.overrides);
  std::cout << mowe::config::to_text(config);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const mowe::Error& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
