#include "runtime/check.h"

#include <spdlog/spdlog.h>

#include "runtime/log.h"

namespace mowe {

void check_failed(const char* lib, const char* expr, const std::string& detail, const char* file,
                  int line) {
  std::string msg = fmt::format("{} failed on rank {}: {}: {} ({}:{})", lib, log::rank(), expr,
                                detail, file, line);
  spdlog::error("{}", msg);
  throw Error(msg);
}

}  // namespace mowe
