#include "launch/train/collective.h"

#include <cstring>
#include <vector>

#include "runtime/check.h"

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
  const std::string message = broadcast_string(comm, first, error);
  if (comm.rank() == first || comm.size() == 1) throw AgreedError(message);
  throw AgreedError(fmt::format("rank {}: {}", first, message));
}

}  // namespace mowe::train
