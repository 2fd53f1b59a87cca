#include "comm/communicator.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <numeric>

#include "comm/device_copy.h"
#include "comm/mpi_check.h"
#include "comm/mpi_communicator.h"
#include "comm/watchdog.h"

#ifdef MOWE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "comm/nccl_communicator.h"
#include "runtime/cuda/cuda_backend.h"
#endif

namespace mowe::comm {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
  }
  return "?";
}

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::Allreduce:
      return "allreduce";
    case Collective::AllToAll:
      return "alltoallv";
    case Collective::Broadcast:
      return "broadcast";
    case Collective::Barrier:
      return "barrier";
  }
  return "?";
}

double blocked_seconds(Collective c) {
  return blocked_seconds(static_cast<int>(c));
}

CollectiveStats& CollectiveStats::operator+=(const CollectiveStats& o) {
  calls += o.calls;
  messages += o.messages;
  bytes += o.bytes;
  return *this;
}

CollectiveStats CollectiveStats::operator-(const CollectiveStats& o) const {
  return {calls - o.calls, messages - o.messages, bytes - o.bytes};
}

CollectiveStats CommStats::total() const {
  CollectiveStats sum;
  for (const auto& s : by_op) sum += s;
  return sum;
}

// ---- Request ---------------------------------------------------------------------------------

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    finish_quietly();  // a pending request is waited for before it is replaced
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Request::~Request() {
  finish_quietly();
}

void Request::finish_quietly() noexcept {
  if (!impl_) return;
  try {
    impl_->wait();
  } catch (const std::exception& e) {
    spdlog::error("[comm] pending collective failed while its request was dropped: {}", e.what());
  }
  impl_.reset();
}

bool Request::test() {
  if (impl_ && impl_->test()) impl_.reset();
  return impl_ == nullptr;
}

void Request::wait() {
  if (!impl_) return;
  // Reset even when wait throws: the request has ended either way.
  auto impl = std::move(impl_);
  impl->wait();
}

// ---- Communicator: checks and counters -------------------------------------------------------

std::unique_ptr<Communicator> Communicator::for_device(Device device, CommOptions) {
  throw Error(fmt::format("[comm] group '{}': a {} communicator cannot make one for {} tensors",
                          name(), backend(), device_name(device)));
}

std::unique_ptr<Communicator> SingleRankCommunicator::for_device(Device device,
                                                                 CommOptions options) {
  return std::make_unique<SingleRankCommunicator>(device, std::move(options));
}

CommOptions Communicator::child_options(int color) const {
  CommOptions child = options_;
  child.name = fmt::format("{}/{}", options_.name, color);
  return child;
}

void Communicator::check_tensor(const char* op, const char* what, const Tensor& t) const {
  MOWE_CHECK(t.device == device(),
             "[comm] {} on group '{}': {} is {} but the {} communicator "
             "works on {} tensors",
             op, name(), what, t.str(), backend(), device_name(device()));
  MOWE_CHECK(t.data != nullptr || t.numel() == 0, "[comm] {} on group '{}': {} {} has no data", op,
             name(), what, t.str());
}

void Communicator::check_root(const char* op, int root) const {
  MOWE_CHECK(root >= 0 && root < size(), "[comm] {} on group '{}': root {} is not a rank of {}", op,
             name(), root, size());
}

namespace {

int64_t checked_sum(const char* what, std::span<const int64_t> rows, const std::string& group) {
  int64_t sum = 0;
  for (size_t j = 0; j < rows.size(); ++j) {
    MOWE_CHECK(rows[j] >= 0, "[comm] alltoallv on group '{}': {}[{}] = {} is negative", group, what,
               j, rows[j]);
    sum += rows[j];
  }
  return sum;
}

}  // namespace

int64_t Communicator::check_alltoallv(const Tensor& send, std::span<const int64_t> send_rows,
                                      const Tensor& recv,
                                      std::span<const int64_t> recv_rows) const {
  const char* op = "alltoallv";
  check_tensor(op, "send", send);
  check_tensor(op, "recv", recv);
  MOWE_CHECK(
      static_cast<int>(send_rows.size()) == size() && static_cast<int>(recv_rows.size()) == size(),
      "[comm] alltoallv on group '{}': {} send and {} recv counts for {} ranks", name(),
      send_rows.size(), recv_rows.size(), size());
  MOWE_CHECK(send.dtype == recv.dtype && send.cols() == recv.cols() && send.cols() > 0,
             "[comm] alltoallv on group '{}': send {} and recv {} must have the same dtype and "
             "row width",
             name(), send.str(), recv.str());
  const int64_t send_total = checked_sum("send_rows", send_rows, name());
  const int64_t recv_total = checked_sum("recv_rows", recv_rows, name());
  MOWE_CHECK(send_total == send.rows() && recv_total == recv.rows(),
             "[comm] alltoallv on group '{}': counts add up to {} send and {} recv rows but the "
             "tensors are {} and {}",
             name(), send_total, recv_total, send.str(), recv.str());
  return send.cols();
}

int64_t Communicator::count_call(Collective c, int64_t payload_bytes) {
  CollectiveStats& s = stats_[c];
  ++s.calls;
  if (size() > 1) s.bytes += payload_bytes;
  return s.calls;
}

int64_t Communicator::count_alltoallv(std::span<const int64_t> send_rows, int64_t row_bytes) {
  CollectiveStats& s = stats_[Collective::AllToAll];
  ++s.calls;
  for (int j = 0; j < static_cast<int>(send_rows.size()); ++j) {
    if (j == rank() || send_rows[j] == 0) continue;
    ++s.messages;
    s.bytes += send_rows[j] * row_bytes;
  }
  return s.calls;
}

// ---- SingleRankCommunicator ------------------------------------------------------------------

SingleRankCommunicator::SingleRankCommunicator(Device device, CommOptions options)
    : Communicator(std::move(options)), device_(device) {}

Request SingleRankCommunicator::start_allreduce(const Tensor& inout, ReduceOp) {
  check_tensor("allreduce", "inout", inout);
  count_call(Collective::Allreduce, static_cast<int64_t>(inout.nbytes()));
  return Request();
}

void SingleRankCommunicator::alltoallv(const Tensor& send, std::span<const int64_t> send_rows,
                                       const Tensor& recv, std::span<const int64_t> recv_rows) {
  check_alltoallv(send, send_rows, recv, recv_rows);
  MOWE_CHECK(send_rows[0] == recv_rows[0],
             "[comm] alltoallv on group '{}': sends {} rows to "
             "itself but expects {}",
             name(), send_rows[0], recv_rows[0]);
  count_alltoallv(send_rows, 0);
  copy_bytes(device_, stream(), recv.data, send.data, send.nbytes());
}

void SingleRankCommunicator::broadcast(const Tensor& inout, int root) {
  check_tensor("broadcast", "inout", inout);
  check_root("broadcast", root);
  count_call(Collective::Broadcast, static_cast<int64_t>(inout.nbytes()));
}

void SingleRankCommunicator::barrier() {
  count_call(Collective::Barrier, 0);
}

std::unique_ptr<Communicator> SingleRankCommunicator::split(int color, int) {
  if (color < 0) return nullptr;
  return std::make_unique<SingleRankCommunicator>(device_, child_options(color));
}

// ---- factory ---------------------------------------------------------------------------------

namespace {

#ifdef MOWE_WITH_CUDA
// Why this rank cannot use NCCL, or "" when it can.
std::string nccl_unusable_reason(const CommOptions& options) {
  if (const char* off = std::getenv("MOWE_NO_NCCL"); off != nullptr && *off && *off != '0')
    return "MOWE_NO_NCCL is set";
  if (!cuda_device_available()) return "no GPU is visible";
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || options.cuda_device >= count) {
    cudaGetLastError();
    return fmt::format("GPU {} does not exist", options.cuda_device);
  }
  return "";
}
#endif

}  // namespace

std::unique_ptr<Communicator> make_communicator(MPI_Comm comm, Device device, CommOptions options) {
  if (device == Device::CPU) return std::make_unique<MpiCommunicator>(comm, device, options);
  // The simulated device has no NCCL: its data goes over MPI staged through host memory, the
  // fallback path a CUDA job takes when NCCL cannot serve it.
  if (device == Device::SIMULATED) return std::make_unique<MpiCommunicator>(comm, device, options);
#ifdef MOWE_WITH_CUDA
  // Every rank must take the same branch: NCCL and MPI communicators cannot talk to each other.
  const std::string reason = nccl_unusable_reason(options);
  int usable = reason.empty() ? 1 : 0, everywhere = 0;
  MPI_CHECK(MPI_Allreduce(&usable, &everywhere, 1, MPI_INT, MPI_MIN, comm));
  if (everywhere) return std::make_unique<NcclCommunicator>(comm, options);
  MOWE_CHECK(options.allow_fallback,
             "[comm] NCCL cannot serve group '{}' ({}) and the fallback "
             "is disabled",
             options.name, reason.empty() ? "on another rank" : reason);
  spdlog::warn(
      "[comm] NCCL cannot serve group '{}' ({}): falling back to MPI through host "
      "memory, which is much slower",
      options.name, reason.empty() ? "on another rank" : reason);
  return std::make_unique<MpiCommunicator>(comm, device, options);
#else
  (void)comm;
  throw Error(
      fmt::format("[comm] group '{}': CUDA collectives requested but this build has no "
                  "CUDA backend (MOWE_WITH_CUDA=OFF); use parallel.device = CPU",
                  options.name));
#endif
}

}  // namespace mowe::comm
