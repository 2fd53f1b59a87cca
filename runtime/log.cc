#include "runtime/log.h"

#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "runtime/check.h"

namespace mowe::log {
namespace {
int g_rank = 0;
}

void init(const Options& options) {
  g_rank = options.rank;
  auto level = spdlog::level::from_str(options.level);
  // from_str maps unknown names to "off"; refuse them instead of silently muting the job.
  if (level == spdlog::level::off && options.level != "off") {
    throw Error(fmt::format("log level '{}' is not one of trace, debug, info, warn, error, off",
                            options.level));
  }
  // stderr keeps logs apart from data a program prints on stdout (reports, --help).
  auto logger = std::make_shared<spdlog::logger>(
      "mowe", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_pattern(
      fmt::format("[%Y-%m-%d %H:%M:%S.%e] [rank {}/{}] [%l] %v", options.rank, options.world_size));
  if (options.rank != 0 && !options.all_ranks && level < spdlog::level::warn) {
    level = spdlog::level::warn;
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

int rank() {
  return g_rank;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "unknown-host";
  return name;
}

}  // namespace mowe::log
