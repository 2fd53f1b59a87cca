#include "comm/agree.h"

#include <cstring>
#include <exception>
#include <vector>

#include "runtime/log.h"

namespace mowe::comm {

std::string broadcast_string(Communicator& comm, int root, const std::string& text) {
  // Its length, then its bytes as i32 words (the dtypes every communicator moves).
  int32_t length = comm.rank() == root ? static_cast<int32_t>(text.size()) : 0;
  comm.broadcast(Tensor(&length, DType::I32, Device::CPU, {1}), root);
  std::vector<int32_t> words((length + 3) / 4 + 1, 0);
  if (comm.rank() == root) std::memcpy(words.data(), text.data(), text.size());
  comm.broadcast(
      Tensor(words.data(), DType::I32, Device::CPU, {static_cast<int64_t>(words.size())}), root);
  return std::string(reinterpret_cast<const char*>(words.data()), length);
}

std::string lowest_rank_text(Communicator& comm, const std::string& mine) {
  int32_t first = mine.empty() ? comm.size() : comm.rank();
  comm.allreduce(Tensor(&first, DType::I32, Device::CPU, {1}), ReduceOp::Min);
  return first == comm.size() ? std::string() : broadcast_string(comm, first, mine);
}

void run_agreed(Communicator& comm, const std::function<void()>& fn) {
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
    // Another rank's error is prefixed with its rank and host, since a file missing on one node
    // is found by the node's name; rank 0's own is most often every rank's (a bad config) and
    // reads best as it is.
    if (comm.rank() != 0)
      error = fmt::format("rank {} on host {}: {}", comm.rank(), log::host_name(), error);
  }
  const std::string agreed = lowest_rank_text(comm, error);
  if (!agreed.empty()) throw AgreedError(agreed);
}

void check_same_everywhere(Communicator& comm, uint64_t fingerprint, const std::string& what,
                           const std::string& remedy) {
  const std::string mine = fmt::format("{:016x}", fingerprint);
  const std::string rank0 = broadcast_string(comm, 0, mine);
  std::string differs;
  if (mine != rank0)
    differs =
        fmt::format("{}: rank {} on host {} differs from rank 0 (fingerprint {}, rank 0's {}): {}",
                    what, comm.rank(), log::host_name(), mine, rank0, remedy);
  const std::string agreed = lowest_rank_text(comm, differs);
  if (!agreed.empty()) throw AgreedError(agreed);
}

}  // namespace mowe::comm
