#include "launch/train/collective.h"

#include <cstring>
#include <vector>

#include "runtime/check.h"

namespace mowe::train {

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
  // The failing rank's message travels to all: its length, then its bytes (as i32 words).
  int32_t length = comm.rank() == first ? static_cast<int32_t>(error.size()) : 0;
  comm.broadcast(Tensor(&length, DType::I32, Device::CPU, {1}), first);
  std::vector<int32_t> words((length + 3) / 4 + 1, 0);
  if (comm.rank() == first) std::memcpy(words.data(), error.data(), error.size());
  comm.broadcast(
      Tensor(words.data(), DType::I32, Device::CPU, {static_cast<int64_t>(words.size())}), first);
  std::string message(reinterpret_cast<const char*>(words.data()), length);
  if (comm.rank() == first || comm.size() == 1) throw AgreedError(message);
  throw AgreedError(fmt::format("rank {}: {}", first, message));
}

}  // namespace mowe::train
