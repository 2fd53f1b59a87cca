#include "comm/nccl_communicator.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <vector>

#include "comm/mpi_check.h"
#include "comm/mpi_communicator.h"
#include "runtime/cuda/cuda_check.h"

// A non-blocking NCCL call: checked, then waited for while NCCL is still issuing it.
#define NCCL_ISSUE(call, info) settle((call), #call, (info), __FILE__, __LINE__)

namespace mowe::comm {
namespace {

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::I32:
      return ncclInt32;
    case DType::BF16:
      return ncclBfloat16;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return ncclSum;
    case ReduceOp::Max:
      return ncclMax;
    case ReduceOp::Min:
      return ncclMin;
  }
  return ncclSum;
}

// Completes when a CUDA event recorded after the collective has been reached; an asynchronous
// NCCL error (a peer failed) ends the wait with an Error.
class NcclRequest final : public Request::Impl {
 public:
  NcclRequest(ncclComm_t comm, cudaStream_t stream, WaitInfo info, std::function<void()> abort)
      : comm_(comm), info_(info), abort_(std::move(abort)) {
    CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(event_, stream));
  }
  ~NcclRequest() override { cudaEventDestroy(event_); }

  bool test() override {
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclInProgress) NCCL_CHECK(async);
    const cudaError_t state = cudaEventQuery(event_);
    if (state == cudaErrorNotReady) return false;
    CUDA_CHECK(state);
    return true;
  }
  void wait() override {
    watch(
        info_, [this] { return test(); }, abort_);
  }

 private:
  ncclComm_t comm_;
  cudaEvent_t event_ = nullptr;
  WaitInfo info_;
  std::function<void()> abort_;
};

}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm comm, CommOptions options)
    : Communicator(std::move(options)) {
  MPI_CHECK(MPI_Comm_dup(comm, &mpi_));
  MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(mpi_, &rank_));
  MPI_CHECK(MPI_Comm_size(mpi_, &size_));
  if (options_.cuda_device >= 0) CUDA_CHECK(cudaSetDevice(options_.cuda_device));
  CUDA_CHECK(cudaGetDevice(&cuda_device_));
  stream_ = static_cast<cudaStream_t>(options_.cuda_stream);
  if (stream_ == nullptr) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    own_stream_ = true;
  }

  ncclUniqueId id{};
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibcast(&id, sizeof(id), MPI_BYTE, 0, mpi_, &request));
  const WaitInfo bcast_info{"nccl id broadcast",     1, sizeof(id), &options_.name, rank_, size_,
                            options_.timeout_seconds};
  watch(bcast_info, [&] {
    int flag = 0;
    MPI_CHECK(MPI_Test(&request, &flag, MPI_STATUS_IGNORE));
    return flag != 0;
  });

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const WaitInfo init_info{"ncclCommInitRank",      1, 0, &options_.name, rank_, size_,
                           options_.timeout_seconds};
  NCCL_ISSUE(ncclCommInitRankConfig(&nccl_, size_, id, rank_, &config), init_info);
  spdlog::debug("[comm] NCCL group '{}': rank {} of {} on GPU {}", name(), rank_, size_,
                cuda_device_);
}

NcclCommunicator::~NcclCommunicator() {
  if (nccl_ != nullptr) {
    // Finalize flushes outstanding work. A destructor cannot report errors, and must not hang on
    // a dead peer: past the timeout the communicator is aborted instead.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(options_.timeout_seconds);
    ncclResult_t state = ncclCommFinalize(nccl_);
    while (state == ncclInProgress && ncclCommGetAsyncError(nccl_, &state) == ncclSuccess) {
      if (options_.timeout_seconds > 0 && std::chrono::steady_clock::now() > deadline) break;
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(nccl_);
    } else {
      ncclCommAbort(nccl_);
    }
  }
  if (own_stream_) cudaStreamDestroy(stream_);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
}

void NcclCommunicator::abort_nccl() noexcept {
  if (nccl_ != nullptr) ncclCommAbort(nccl_);
  nccl_ = nullptr;
}

WaitInfo NcclCommunicator::wait_info(Collective c, int64_t call, int64_t bytes) const {
  return {collective_name(c), call, bytes, &options_.name, rank_, size_, options_.timeout_seconds,
          static_cast<int>(c)};
}

void NcclCommunicator::settle(ncclResult_t result, const char* expr, const WaitInfo& info,
                              const char* file, int line) {
  if (result != ncclSuccess && result != ncclInProgress)
    check_failed("NCCL", expr, cuda::nccl_error_string(result), file, line);
  ncclResult_t state = result;
  if (state == ncclInProgress) {
    watch(
        info,
        [&] {
          NCCL_CHECK(ncclCommGetAsyncError(nccl_, &state));
          return state != ncclInProgress;
        },
        [this] { abort_nccl(); });
  }
  if (state != ncclSuccess) check_failed("NCCL", expr, cuda::nccl_error_string(state), file, line);
}

Request NcclCommunicator::completion(const WaitInfo& info) {
  return Request(std::make_unique<NcclRequest>(nccl_, stream_, info, [this] { abort_nccl(); }));
}

Request NcclCommunicator::start_allreduce(const Tensor& inout, ReduceOp op) {
  check_tensor("allreduce", "inout", inout);
  MOWE_CHECK(inout.dtype != DType::BF16,
             "[comm] allreduce on group '{}': {} cannot be reduced "
             "here (f32, f64 and i32 can)",
             name(), inout.str());
  const auto bytes = static_cast<int64_t>(inout.nbytes());
  const WaitInfo info =
      wait_info(Collective::Allreduce, count_call(Collective::Allreduce, bytes), bytes);
  NCCL_ISSUE(ncclAllReduce(inout.data, inout.data, static_cast<size_t>(inout.numel()),
                           nccl_type(inout.dtype), nccl_op(op), nccl_, stream_),
             info);
  return completion(info);
}

void NcclCommunicator::alltoallv(const Tensor& send, std::span<const int64_t> send_rows,
                                 const Tensor& recv, std::span<const int64_t> recv_rows) {
  const int64_t row_elems = check_alltoallv(send, send_rows, recv, recv_rows);
  MOWE_CHECK(send_rows[rank_] == recv_rows[rank_],
             "[comm] alltoallv on group '{}': rank {} "
             "sends {} rows to itself but expects {}",
             name(), rank_, send_rows[rank_], recv_rows[rank_]);
  const auto row_bytes = static_cast<int64_t>(row_elems * dtype_size(send.dtype));
  const WaitInfo info = wait_info(Collective::AllToAll, count_alltoallv(send_rows, row_bytes),
                                  static_cast<int64_t>(send.nbytes()));
  std::vector<int64_t> send_off(size_ + 1, 0), recv_off(size_ + 1, 0);
  for (int j = 0; j < size_; ++j) {
    send_off[j + 1] = send_off[j] + send_rows[j] * row_bytes;
    recv_off[j + 1] = recv_off[j] + recv_rows[j] * row_bytes;
  }
  auto* sb = static_cast<char*>(send.data);
  auto* rb = static_cast<char*>(recv.data);
  const ncclDataType_t type = nccl_type(send.dtype);
  // One grouped launch: every send and receive of this rank progresses together.
  NCCL_ISSUE(ncclGroupStart(), info);
  for (int k = 1; k < size_; ++k) {
    const int dst = (rank_ + k) % size_, src = (rank_ - k + size_) % size_;
    if (send_rows[dst] > 0) {
      NCCL_ISSUE(ncclSend(sb + send_off[dst], static_cast<size_t>(send_rows[dst] * row_elems), type,
                          dst, nccl_, stream_),
                 info);
    }
    if (recv_rows[src] > 0) {
      NCCL_ISSUE(ncclRecv(rb + recv_off[src], static_cast<size_t>(recv_rows[src] * row_elems), type,
                          src, nccl_, stream_),
                 info);
    }
  }
  NCCL_ISSUE(ncclGroupEnd(), info);
  if (send_rows[rank_] > 0) {
    CUDA_CHECK(cudaMemcpyAsync(rb + recv_off[rank_], sb + send_off[rank_],
                               send_rows[rank_] * row_bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  completion(info).wait();
}

void NcclCommunicator::broadcast(const Tensor& inout, int root) {
  check_tensor("broadcast", "inout", inout);
  check_root("broadcast", root);
  const auto bytes = static_cast<int64_t>(inout.nbytes());
  const WaitInfo info =
      wait_info(Collective::Broadcast, count_call(Collective::Broadcast, bytes), bytes);
  NCCL_ISSUE(ncclBroadcast(inout.data, inout.data, static_cast<size_t>(inout.numel()),
                           nccl_type(inout.dtype), root, nccl_, stream_),
             info);
  completion(info).wait();
}

void NcclCommunicator::barrier() {
  // NCCL has no barrier: the MPI one over the same ranks, after this rank's queued collectives.
  const WaitInfo info = wait_info(Collective::Barrier, count_call(Collective::Barrier, 0), 0);
  completion(info).wait();
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Ibarrier(mpi_, &request));
  watch(
      info,
      [&] {
        int flag = 0;
        MPI_CHECK(MPI_Test(&request, &flag, MPI_STATUS_IGNORE));
        return flag != 0;
      },
      [this] { abort_nccl(); });
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  MPI_Comm part = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split(mpi_, color < 0 ? MPI_UNDEFINED : color, key, &part));
  if (part == MPI_COMM_NULL) return nullptr;
  CommOptions child = child_options(color);
  child.cuda_device = cuda_device_;
  child.cuda_stream = stream_;
  auto result = std::make_unique<NcclCommunicator>(part, child);
  MPI_CHECK(MPI_Comm_free(&part));
  return result;
}

int NcclCommunicator::ranks_per_node() {
  return mpi_ranks_per_node(mpi_);
}

}  // namespace mowe::comm
