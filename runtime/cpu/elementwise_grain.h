// Task sizes of the CPU ops on the thread pool: large enough that a task outweighs waking a
// worker (a few microseconds), small enough to balance two to a few dozen cores.
#pragma once

#include <algorithm>
#include <cstdint>

namespace mowe::cpu {

// Elements per task for work with a tanh or exp per element (~1 ns each vectorised).
constexpr int64_t kGrainTranscendental = 16384;
// Elements per task for streaming work (axpy, fill, optimizer updates).
constexpr int64_t kGrainStreaming = 65536;

// Rows per task for row-wise work over rows of `cols` elements.
inline int64_t rows_grain(int64_t cols, int64_t elements = kGrainTranscendental) {
  return std::max<int64_t>(1, elements / std::max<int64_t>(1, cols));
}

}  // namespace mowe::cpu
