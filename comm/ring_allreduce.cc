#include "comm/ring_allreduce.h"

#include "comm/mpi_check.h"

namespace mowe::comm {

void RingAllreduce::start(MPI_Comm comm, int rank, int size, int tag, void* data, int64_t count,
                          MPI_Datatype type, size_t elem_bytes, MPI_Op op) {
  MOWE_CHECK(size >= 2 && rank >= 0 && rank < size, "[comm] ring allreduce of rank {} of {}", rank,
             size);
  comm_ = comm;
  rank_ = rank;
  size_ = size;
  tag_ = tag;
  data_ = static_cast<char*>(data);
  count_ = count;
  type_ = type;
  elem_ = elem_bytes;
  op_ = op;
  step_ = 0;
  steps_ = 2 * (size - 1);
  // Grows to the largest segment seen, then stays: steady-state steps allocate nothing.
  const size_t largest = static_cast<size_t>((count + size - 1) / size) * elem_;
  if (incoming_.size() < largest) incoming_.resize(largest);
  post();
}

// Segment s is [s count / p, (s + 1) count / p): sizes differ by at most one element.
int64_t RingAllreduce::segment_begin(int segment) const {
  return count_ * segment / size_;
}

int64_t RingAllreduce::segment_size(int segment) const {
  return segment_begin(segment + 1) - segment_begin(segment);
}

// Reduce-scatter step k sends segment (rank - k) and receives segment (rank - k - 1), which it
// adds to its own; after p - 1 steps the rank holds the total of segment (rank + 1). Allgather
// step k sends segment (rank + 1 - k) and receives segment (rank - k) in place.
void RingAllreduce::post() {
  const bool reducing = step_ < size_ - 1;
  const int k = reducing ? step_ : step_ - (size_ - 1);
  const int send_segment = ((reducing ? rank_ - k : rank_ + 1 - k) % size_ + size_) % size_;
  recv_segment_ = ((reducing ? rank_ - k - 1 : rank_ - k) % size_ + size_) % size_;
  const int right = (rank_ + 1) % size_, left = (rank_ + size_ - 1) % size_;
  char* recv_to = reducing ? incoming_.data() : data_ + segment_begin(recv_segment_) * elem_;
  // Segments are at most count / p + 1 elements, and count fits MPI's int (mpi_count).
  MPI_CHECK(MPI_Irecv(recv_to, static_cast<int>(segment_size(recv_segment_)), type_, left, tag_,
                      comm_, &requests_[0]));
  MPI_CHECK(MPI_Isend(data_ + segment_begin(send_segment) * elem_,
                      static_cast<int>(segment_size(send_segment)), type_, right, tag_, comm_,
                      &requests_[1]));
}

bool RingAllreduce::test() {
  while (step_ < steps_) {
    int flag = 0;
    MPI_CHECK(MPI_Testall(2, requests_, &flag, MPI_STATUSES_IGNORE));
    if (!flag) return false;
    if (step_ < size_ - 1) {
      // incoming op own, in ring order.
      MPI_CHECK(MPI_Reduce_local(incoming_.data(), data_ + segment_begin(recv_segment_) * elem_,
                                 static_cast<int>(segment_size(recv_segment_)), type_, op_));
    }
    if (++step_ < steps_) post();
  }
  return true;
}

}  // namespace mowe::comm
