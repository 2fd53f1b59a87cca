#include "runtime/checkpoint/fault_point.h"

#include <csignal>
#include <cstdlib>
#include <string>

namespace mowe::checkpoint {

void fault_point(const char* point) {
  static const char* spec = std::getenv("MOWE_CHECKPOINT_FAULT");
  static int reached = 0;
  if (spec == nullptr) return;
  const std::string s(spec);
  const size_t colon = s.find(':');
  if (s.substr(0, colon) != point) return;
  const int n = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
  if (++reached == n) std::raise(SIGKILL);
}

}  // namespace mowe::checkpoint
