#include "launch/train/collective.h"

#include <cstring>
#include <vector>

#include "runtime/check.h"
#include "runtime/log.h"

namespace mowe::train {

std::string broadcast_string(comm::Communicator& comm, int root, const std::string& text) {
  // Its length, then its bytes as i32 words (the dtypes every communicator moves).
  int32_t length = comm.rank() == root ? static_cast<int32_t>(text.size()) : 0;
  comm.broadcast(Tensor(&length, DType::I32, Device::CPU, {1}), root);
  std::vector<int32_t> words((length + 3) / 4 + 1, 0);
  if (comm.rank() == root) std::memcpy(words.data(), text.data(), text.size());
  comm.broadcast(
      Tensor(words.data(), DType::I32, Device::CPU, {static_cast<int64_t>(words.size())}), root);
  return std::string(reinterpret_cast<const char*>(words.data()), length);
}

void run_agreed(comm::Communicator& comm, const std::function<void()>& fn) {
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  }
  int32_t first = error.empty() ? comm.size() : comm.rank();
  comm.allreduce(Tensor(&first, DType::I32, Device::CPU, {1}), comm::ReduceOp::Min);
  if (first == comm.size()) return;
  // Rank 0 prints agreed errors. Another rank's error is prefixed with its rank and host, since
  // a file missing on one node is found by the node's name; rank 0's own is often the same on
  // every rank (a bad config) and reads best as it is.
  if (comm.rank() == first && first != 0)
    error = fmt::format("rank {} on host {}: {}", first, log::host_name(), error);
  throw AgreedError(broadcast_string(comm, first, error));
}

}  // namespace mowe::train
