// The command line every program shares; program-specific flags are passed in by name.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "runtime/check.h"
#include "runtime/config/config.h"

#include <cmath>

namespace mowe::config {
namespace {

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

const std::vector<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "off"};

// " --config C --set k=v ..." of the last command line parsed, for command_for_this_config.
// Written once at start-up, before any thread that could read it exists.
std::string& config_arguments() {
  static std::string arguments;
  return arguments;
}

}  // namespace

std::string shell_quote(const std::string& text) {
  const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_-./=:,+@%", c) != nullptr;
  });
  if (plain) return text;
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string command_for_this_config(const std::string& program, const std::string& extra) {
  const std::string& arguments = config_arguments();
  return program + (arguments.empty() ? " --config <config>" : arguments) +
         (extra.empty() ? "" : " " + extra);
}

CommonFlags parse_common_flags(int argc, char** argv,
                               const std::vector<std::string>& extra_bool_flags,
                               const std::vector<std::string>& extra_value_flags) {
  CommonFlags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      flags.positional.insert(flags.positional.end(), argv + i + 1, argv + argc);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      flags.positional.push_back(arg);
      continue;
    }
    // "--name=value" and "--name value" are the same flag.
    size_t eq = arg.rfind("--", 0) == 0 ? arg.find('=') : std::string::npos;
    std::string name = arg.substr(0, eq);
    bool inline_value = eq != std::string::npos;
    auto value = [&]() -> std::string {
      if (inline_value) return arg.substr(eq + 1);
      if (i + 1 >= argc) throw UserError(fmt::format("flag {} needs a value", name));
      return argv[++i];
    };
    auto no_value = [&]() {
      if (inline_value) throw UserError(fmt::format("flag {} takes no value", name));
    };
    if (name == "--config") {
      flags.config_path = value();
    } else if (name == "--set") {
      flags.overrides.push_back(value());
    } else if (name == "--help" || name == "-h") {
      no_value(), flags.help = true;
    } else if (name == "--log-all-ranks") {
      no_value(), flags.log_all_ranks = true;
    } else if (name == "--log-level") {
      flags.log_level = value();
      if (!contains(kLogLevels, flags.log_level))
        throw UserError(fmt::format("flag --log-level: '{}' is not one of {}", flags.log_level,
                                    fmt::join(kLogLevels, ", ")));
    } else if (contains(extra_bool_flags, name)) {
      no_value(), flags.flags.insert(name);
    } else if (contains(extra_value_flags, name)) {
      flags.values[name] = value();
    } else {
      throw UserError(fmt::format("unknown flag '{}' (run with --help for the flags)", name));
    }
  }
  if (!flags.config_path.empty()) {
    std::string arguments = " --config " + shell_quote(flags.config_path);
    for (const std::string& o : flags.overrides) arguments += " --set " + shell_quote(o);
    config_arguments() = arguments;
  }
  return flags;
}

int64_t parse_int_flag(const std::string& text, const std::string& flag, int64_t minimum) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < minimum)
    throw UserError(fmt::format("{} expects an integer >= {}, not '{}'", flag, minimum, text));
  return value;
}

double parse_double_flag(const std::string& text, const std::string& flag,
                         double exclusive_minimum) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(value) || value <= exclusive_minimum)
    throw UserError(
        fmt::format("{} expects a number > {}, not '{}'", flag, exclusive_minimum, text));
  return value;
}

}  // namespace mowe::config
