// Configuration: text-format protobuf files (configs/*.textproto) checked against the schema in
// runtime/proto/config.proto, with --set overrides, one validation step, and the --help text and
// configuration reference generated from the same schema.
//
// Loading here is generic: it checks the schema's bounds and the rules it is given. The rules
// about each module's fields live with the module; programs and tests load through
// launch/train/config_rules.h, which passes all of them:
//
//   auto flags = config::parse_common_flags(argc, argv, {"--dry-run"});
//   if (flags.help) { std::cout << config::help_text("mowe_pretrain", "..."); return 0; }
//   config::Config cfg = train::load_config(flags.config_path, flags.overrides);
//
// Every error is a mowe::Error whose what() is one line naming the source (file:line:column or
// the --set argument), the field's dotted path and what is allowed.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "runtime/config/rules.h"
#include "runtime/proto/config.pb.h"

namespace mowe::config {

// Parses the file, applies each "path.to.field=value" override in order, then validates with
// `rules` (find_violation in rules.h), naming the position in the file or the --set argument of
// the field to blame.
Config load_config(const std::string& path, const std::vector<std::string>& overrides, Rules rules);

// As load_config, for text already in memory; source names it in error messages.
Config load_config_text(const std::string& text, const std::string& source,
                        const std::vector<std::string>& overrides, Rules rules);

// Applies one "path.to.field=value" override. Paths go through nested messages with dots and
// into repeated messages with [i] (i == size appends); repeated scalars take a whole list
// "[1, 2, 3]" or one element "layers[1]=3"; enums take value names; message fields take text
// format ("{ num_blocks: 4 }", lists as "[{...}, {...}]").
void apply_override(Config* config, const std::string& assignment);

// Checks every field (set or default) against the schema's bounds, then `rules`, the rules that
// relate fields to each other. Throws at the first violation: "config: <path> ... <allowed>".
void validate(const Config& config, Rules rules);

// A copy with every unset field set to its default, recursively, so that printing it records
// every value in use.
Config with_defaults(const Config& config);

// The resolved config in text format, defaults included.
std::string to_text(const Config& config);

// --help for a program: usage, the common flags, then every config field as
// "--set path=<type>  (default ...; range)" with its help text.
std::string help_text(const std::string& program, const std::string& usage);

// docs/configuration.md: a table per message, generated from the schema.
std::string reference_markdown();

// Flags every program shares. Program-specific boolean flags ("--describe") land in `flags`,
// program-specific flags with a value ("--out PATH" or "--out=PATH") in `values`.
struct CommonFlags {
  std::string config_path;
  std::vector<std::string> overrides;  // from --set, in command-line order
  bool help = false;
  bool log_all_ranks = false;
  std::string log_level = "info";
  std::set<std::string> flags;
  std::map<std::string, std::string> values;
  std::vector<std::string> positional;

  bool has(const std::string& flag) const { return flags.count(flag) > 0; }
};

// Parses --config PATH, --set k=v (repeatable), --help/-h, --log-all-ranks, --log-level L, the
// given extra flags, and positional arguments ("--" ends the flags). An unknown flag or a
// missing value throws an Error naming it.
// A program flag's value as a number, the whole text or an Error naming the flag and the value:
// "--world-size expects an integer >= 1, not 'x'".
int64_t parse_int_flag(const std::string& text, const std::string& flag, int64_t minimum);
double parse_double_flag(const std::string& text, const std::string& flag,
                         double exclusive_minimum);

CommonFlags parse_common_flags(int argc, char** argv,
                               const std::vector<std::string>& extra_bool_flags = {},
                               const std::vector<std::string>& extra_value_flags = {});

// The command that runs `program` on this process's config: the --config and --set arguments
// the last parse_common_flags read, quoted for a shell, then `extra`. Messages about a file one
// program derives for another (routing vocabulary, dispatch plan) give it as the exact way to
// rebuild the file for the same config, whichever program noticed:
//   command_for_this_config("mowe_vocab", "--retrain")
//     == "mowe_vocab --config configs/tiny.textproto --set data.seed=3 --retrain"
// Without a parsed command line (libraries, tests) the config is "--config <config>".
std::string command_for_this_config(const std::string& program, const std::string& extra = "");

// `text` as one shell word: unchanged when it is plain, single-quoted otherwise.
std::string shell_quote(const std::string& text);

}  // namespace mowe::config
