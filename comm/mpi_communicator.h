// The MPI communicator: always built; the CPU path of every collective, and the fallback for
// CUDA tensors (staged through host memory) when NCCL cannot serve a group.
//
// Collectives are non-blocking MPI calls waited for by the watchdog (comm/watchdog.h). The
// all-to-all is one MPI_Isend/MPI_Irecv per non-empty peer plus a local copy to self, rather
// than MPI_Ialltoallv: the counters then count real messages, and only per-peer element counts
// (not buffer displacements) have to fit MPI's int.
#pragma once

#include <mpi.h>

#include <vector>

#include "comm/communicator.h"
#include "comm/watchdog.h"

namespace mowe::comm {

struct RequestPool;

class MpiCommunicator final : public Communicator {
 public:
  // Collective over comm. Works on a duplicate of comm (its own message space, with
  // MPI_ERRORS_RETURN so that failures reach MPI_CHECK). device CUDA stages through host memory.
  explicit MpiCommunicator(MPI_Comm comm, Device device = Device::CPU, CommOptions options = {});
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return device_; }
  const char* backend() const override { return "mpi"; }
  void* stream() const override { return options_.cuda_stream; }
  MPI_Comm mpi_comm() const { return comm_; }

  Request start_allreduce(const Tensor& inout, ReduceOp op) override;
  void alltoallv(const Tensor& send, std::span<const int64_t> send_rows, const Tensor& recv,
                 std::span<const int64_t> recv_rows) override;
  void broadcast(const Tensor& inout, int root) override;
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  std::unique_ptr<Communicator> for_device(Device device, CommOptions options) override;
  int ranks_per_node() override;
  void reserve_requests(int n) override;

 private:
  WaitInfo wait_info(Collective c, int64_t call, int64_t bytes) const;
  void wait_all(std::vector<MPI_Request>& requests, const WaitInfo& info);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  Device device_;
  std::vector<MPI_Request> requests_;               // reused by alltoallv
  std::vector<int> send_count_, recv_count_;        // alltoallv's per-peer counts, reused
  std::vector<int64_t> send_offset_, recv_offset_;  // and byte offsets
  // Ended request objects kept for the next non-blocking collective (Request::Impl::release):
  // shared with the requests, which may outlive this communicator.
  std::shared_ptr<RequestPool> request_pool_;
  int64_t ring_calls_ = 0;  // ring allreduces started: their tags (same on every rank)
};

// MPI's int counts: n elements as an int, or Error naming the operation and the limit.
int mpi_count(int64_t n, const char* op, const std::string& group);
MPI_Datatype mpi_type(DType dtype);
// The rank layout by node: ranks_per_node(comm) of MpiCommunicator, for any MPI communicator.
int mpi_ranks_per_node(MPI_Comm comm);

}  // namespace mowe::comm
