// An in-place allreduce over the ring rank -> rank + 1 on point-to-point messages, for large
// buffers: p - 1 reduce-scatter steps, then p - 1 allgather steps, each rank sending and
// receiving one segment (1/p of the buffer) per step, so every rank moves 2 (p - 1) / p of the
// buffer and reduces 1/p of it. Open MPI 4.1's non-blocking allreduce (libnbc) takes a binomial
// tree for in-place buffers at any rank count: its root reduces the whole buffer while the others
// wait, and it moves log2(p) whole buffers (docs/communication.md).
//
// Non-blocking: start() posts the first step, test() completes steps as their messages arrive
// and posts the next. The segment a rank ends with is summed in the fixed order of the ring, and
// the allgather copies it to every rank, so all ranks hold the same bits.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mowe::comm {

class RingAllreduce {
 public:
  // Begins the allreduce of `count` elements of `type` (each `elem_bytes`) at `data` over `comm`
  // (this rank `rank` of `size` >= 2), with messages tagged `tag`: concurrent rings need
  // different tags. `data` must stay valid until test() returns true.
  void start(MPI_Comm comm, int rank, int size, int tag, void* data, int64_t count,
             MPI_Datatype type, size_t elem_bytes, MPI_Op op);
  // Completes what has arrived and posts the next step; true once the whole allreduce is done.
  bool test();

 private:
  int64_t segment_begin(int segment) const;
  int64_t segment_size(int segment) const;
  void post();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, tag_ = 0;
  char* data_ = nullptr;
  int64_t count_ = 0;
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
  size_t elem_ = 0;
  MPI_Op op_ = MPI_OP_NULL;
  int step_ = 0, steps_ = 0;  // steps [0, size - 1) reduce-scatter, then allgather
  int recv_segment_ = 0;
  MPI_Request requests_[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  std::vector<char> incoming_;  // one segment; kept for the next allreduce
};

}  // namespace mowe::comm
