// Rank-tagged logging over spdlog. Messages start with a [component] tag and use fmt
// placeholders: spdlog::info("[config] loaded {}", path).
#pragma once

#include <string>

namespace mowe::log {

struct Options {
  int rank = 0;
  int world_size = 1;
  bool all_ranks = false;      // otherwise ranks other than 0 print warnings and errors only
  std::string level = "info";  // trace, debug, info, warn, error, off
};

// Installs the default spdlog logger with the pattern "[time] [rank R/W] [level] message".
// Safe to call again (e.g. once the rank is known after MPI_Init).
void init(const Options& options);

// The rank given to init (0 before it), used by check messages.
int rank();

// This machine's host name ("unknown-host" if it cannot be read): errors that happen on one rank
// name it, because on a 64-rank job "rank 37" alone does not say which node to look at.
std::string host_name();

}  // namespace mowe::log
