// The NCCL communicator (CUDA builds): collectives on GPU tensors, queued on one CUDA stream.
//
// The ncclUniqueId is created by rank 0 and broadcast over MPI. The NCCL communicator is
// non-blocking (ncclConfig_t::blocking = 0), so that no NCCL call can hang the host: each call is
// followed by polling ncclCommGetAsyncError, and each collective by polling a CUDA event, both
// under the watchdog, which aborts the NCCL communicator and then the job on a timeout (the
// nccl-tests habit). Collective calls return when the result is in place, as with MPI.
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include "comm/communicator.h"
#include "comm/watchdog.h"

namespace mowe::comm {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over comm; uses options.cuda_device (or the current device) and
  // options.cuda_stream (or a stream of its own).
  NcclCommunicator(MPI_Comm comm, CommOptions options);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return Device::CUDA; }
  const char* backend() const override { return "nccl"; }
  void* stream() const override { return stream_; }
  int cuda_device() const { return cuda_device_; }

  Request start_allreduce(const Tensor& inout, ReduceOp op) override;
  void alltoallv(const Tensor& send, std::span<const int64_t> send_rows, const Tensor& recv,
                 std::span<const int64_t> recv_rows) override;
  void broadcast(const Tensor& inout, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  int ranks_per_node() override;

 private:
  WaitInfo wait_info(Collective c, int64_t call, int64_t bytes) const;
  // After a non-blocking NCCL call: throws on failure, waits while it is still being issued.
  void settle(ncclResult_t result, const char* expr, const WaitInfo& info, const char* file,
              int line);
  // A request completing when the work queued so far on the stream has finished.
  Request completion(const WaitInfo& info);
  void abort_nccl() noexcept;

  MPI_Comm mpi_ = MPI_COMM_NULL;  // duplicate: the id broadcast, splits, node layout
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  int cuda_device_ = 0;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace mowe::comm
