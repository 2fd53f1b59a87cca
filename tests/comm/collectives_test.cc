// Communicator collectives at 1, 2 and 4 ranks, once per compiled backend (nccl-tests style):
// every rank builds its input from (seed, rank), computes every rank's input to get the expected
// result, and compares exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

#include "comm/mpi_communicator.h"
#include "tests/comm/comm_test_util.h"
#include "tests/util/expect_error.h"

namespace mowe::test {
namespace {

using comm::Collective;
using comm::ReduceOp;
using mowe::testing::expect_error;

template <typename T>
std::vector<T> seeded(uint64_t seed, int rank, int64_t n) {
  std::vector<T> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<T>(small_value(seed, rank, i));
  return v;
}

template <typename T>
std::vector<T> expected_reduce(uint64_t seed, int size, int64_t n, ReduceOp op) {
  std::vector<T> out = seeded<T>(seed, 0, n);
  for (int r = 1; r < size; ++r) {
    const std::vector<T> x = seeded<T>(seed, r, n);
    for (int64_t i = 0; i < n; ++i) {
      if (op == ReduceOp::Sum) out[i] += x[i];
      if (op == ReduceOp::Max) out[i] = std::max(out[i], x[i]);
      if (op == ReduceOp::Min) out[i] = std::min(out[i], x[i]);
    }
  }
  return out;
}

class Collectives : public CommBackendTest {
 protected:
  template <typename T>
  void check_allreduce(ReduceOp op, int64_t n, uint64_t seed) {
    DeviceTensor t(device(), Shape{n}, dtype_of<T>());
    t.upload(seeded<T>(seed, rank_, n));
    comm_->allreduce(t, op);
    EXPECT_EQ(t.download<T>(), expected_reduce<T>(seed, size_, n, op))
        << comm::reduce_op_name(op) << " of " << n << " " << dtype_name(dtype_of<T>());
  }
};

TEST_P(Collectives, AllreduceInPlaceEveryOpAndDtype) {
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}}) {
      check_allreduce<float>(op, n, 11 + n);
      check_allreduce<double>(op, n, 12 + n);
      check_allreduce<int32_t>(op, n, 13 + n);
    }
  }
}

TEST_P(Collectives, NonBlockingAllreducesOutstandingTogether) {
  std::vector<std::unique_ptr<DeviceTensor>> tensors;
  std::vector<comm::Request> requests;
  for (int k = 0; k < 5; ++k) {
    tensors.push_back(std::make_unique<DeviceTensor>(device(), Shape{100 + k}, DType::F32));
    tensors.back()->upload(seeded<float>(40 + k, rank_, 100 + k));
    requests.push_back(comm_->start_allreduce(*tensors.back(), ReduceOp::Sum));
  }
  for (int k = 4; k >= 0; --k) requests[k].wait();  // any order of waits
  for (int k = 0; k < 5; ++k) {
    EXPECT_TRUE(requests[k].done());
    EXPECT_EQ(tensors[k]->download<float>(),
              expected_reduce<float>(40 + k, size_, 100 + k, ReduceOp::Sum));
  }
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 5);
}

// From 256 KiB (and one element per rank), MPI allreduces go around a ring of point-to-point
// messages (comm/ring_allreduce.h): sizes that do not split evenly over the ranks, every op and
// dtype, and rings in flight together, waited for in any order.
TEST_P(Collectives, LargeAllreducesGoAroundTheRing) {
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    for (int64_t n : {int64_t{65536}, int64_t{100003}}) {
      check_allreduce<float>(op, n, 21 + n);
      check_allreduce<double>(op, n, 22 + n);
      check_allreduce<int32_t>(op, n, 23 + n);
    }
  }
  std::vector<std::unique_ptr<DeviceTensor>> tensors;
  std::vector<comm::Request> requests;
  for (int k = 0; k < 4; ++k) {
    const int64_t n = 70001 + 977 * k;
    tensors.push_back(std::make_unique<DeviceTensor>(device(), Shape{n}, DType::F32));
    tensors.back()->upload(seeded<float>(60 + k, rank_, n));
    requests.push_back(comm_->start_allreduce(*tensors.back(), ReduceOp::Sum));
  }
  for (int k = 3; k >= 0; --k) requests[k].wait();
  for (int k = 0; k < 4; ++k) {
    const int64_t n = 70001 + 977 * k;
    EXPECT_EQ(tensors[k]->download<float>(),
              expected_reduce<float>(60 + k, size_, n, ReduceOp::Sum))
        << "allreduce " << k;
  }
}

TEST_P(Collectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < size_; ++root) {
    DeviceTensor t(device(), Shape{3, 33}, DType::F64);
    t.upload(seeded<double>(7, rank_, 99));
    comm_->broadcast(t, root);
    EXPECT_EQ(t.download<double>(), seeded<double>(7, root, 99)) << "root " << root;
  }
  EXPECT_EQ(comm_->stats()[Collective::Broadcast].calls, size_);
  EXPECT_EQ(comm_->stats()[Collective::Broadcast].bytes, size_ > 1 ? size_ * 99 * 8 : 0);
}

TEST_P(Collectives, BarrierIsCounted) {
  comm_->barrier();
  comm_->barrier();
  EXPECT_EQ(comm_->stats()[Collective::Barrier].calls, 2);
  comm_->reset_stats();
  EXPECT_EQ(comm_->stats().total(), comm::CollectiveStats{});
}

// Rows from src to dst: uneven, zero for some pairs, and the last rank of 2+ sends nothing.
int64_t pair_rows(int src, int dst, int size, uint64_t seed) {
  if (size > 1 && src == size - 1) return 0;
  return static_cast<int64_t>((src * 3 + dst * 5 + seed) % 4);
}

// The value of column c of row i sent from src to dst: unique and exact in every dtype.
int row_value(int src, int dst, int64_t i, int64_t c) {
  return static_cast<int>(((src * 8 + dst) * 16 + i) * 8 + c);
}

template <typename T>
void check_alltoallv(comm::Communicator& comm, Device device, uint64_t seed, int64_t width) {
  const int rank = comm.rank(), size = comm.size();
  std::vector<int64_t> send_rows(size), recv_rows(size);
  std::vector<T> send, expected;
  for (int j = 0; j < size; ++j) {
    send_rows[j] = pair_rows(rank, j, size, seed);
    recv_rows[j] = pair_rows(j, rank, size, seed);
    for (int64_t i = 0; i < send_rows[j]; ++i) {
      for (int64_t c = 0; c < width; ++c) send.push_back(static_cast<T>(row_value(rank, j, i, c)));
    }
    for (int64_t i = 0; i < recv_rows[j]; ++i) {
      for (int64_t c = 0; c < width; ++c) {
        expected.push_back(static_cast<T>(row_value(j, rank, i, c)));
      }
    }
  }
  const auto rows_of = [&](const std::vector<T>& v) {
    return static_cast<int64_t>(v.size()) / width;
  };
  DeviceTensor s(device, Shape{rows_of(send), width}, dtype_of<T>());
  DeviceTensor r(device, Shape{rows_of(expected), width}, dtype_of<T>());
  s.upload(send);
  comm.reset_stats();
  comm.alltoallv(s, send_rows, r, recv_rows);
  EXPECT_EQ(r.download<T>(), expected) << "seed " << seed << " width " << width;

  int64_t messages = 0, bytes = 0;
  for (int j = 0; j < size; ++j) {
    if (j == rank || send_rows[j] == 0) continue;
    ++messages;
    bytes += send_rows[j] * width * static_cast<int64_t>(sizeof(T));
  }
  EXPECT_EQ(comm.stats()[Collective::AllToAll], (comm::CollectiveStats{1, messages, bytes}));
}

TEST_P(Collectives, AlltoallvUnevenAndEmptySplits) {
  for (uint64_t seed = 0; seed < 4; ++seed) {
    check_alltoallv<float>(*comm_, device(), seed, 3);
    check_alltoallv<int32_t>(*comm_, device(), seed, 1);
    check_alltoallv<double>(*comm_, device(), seed, 5);
  }
}

TEST_P(Collectives, AlltoallvCountsOneMessagePerNonEmptyPeer) {
  std::vector<int64_t> rows(size_, 2);
  DeviceTensor s(device(), Shape{2 * size_, 4}, DType::F32);
  DeviceTensor r(device(), Shape{2 * size_, 4}, DType::F32);
  comm_->alltoallv(s, rows, r, rows);
  EXPECT_EQ(comm_->stats()[Collective::AllToAll].messages, size_ - 1);
  EXPECT_EQ(comm_->stats()[Collective::AllToAll].bytes, (size_ - 1) * 2 * 4 * 4);
}

TEST_P(Collectives, AlltoallvRejectsCountsThatDoNotMatchTheTensors) {
  std::vector<int64_t> rows(size_, 1), short_rows(size_ + 1, 0);
  DeviceTensor s(device(), Shape{size_, 2}, DType::F32),
      r(device(), Shape{size_ + 1, 2}, DType::F32);
  EXPECT_THROW(comm_->alltoallv(s, rows, r, rows), Error);
  EXPECT_THROW(comm_->alltoallv(s, short_rows, s, short_rows), Error);
  EXPECT_EQ(comm_->stats()[Collective::AllToAll].calls, 0);  // nothing was sent
}

TEST_P(Collectives, SplitFormsGroupsOrderedByKey) {
  // Two groups by parity; keys reverse the rank order inside each.
  auto sub = comm_->split(rank_ % 2, -rank_);
  ASSERT_NE(sub, nullptr);
  std::vector<int> members;
  for (int r = size_ - 1; r >= 0; --r) {
    if (r % 2 == rank_ % 2) members.push_back(r);
  }
  ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[sub->rank()], rank_);
  EXPECT_EQ(sub->name(), "world/" + std::to_string(rank_ % 2));

  DeviceTensor t(device(), Shape{50}, DType::I32);
  t.upload(seeded<int32_t>(5, rank_, 50));
  sub->allreduce(t, ReduceOp::Sum);
  std::vector<int32_t> expected(50, 0);
  for (int m : members) {
    const auto x = seeded<int32_t>(5, m, 50);
    for (int i = 0; i < 50; ++i) expected[i] += x[i];
  }
  EXPECT_EQ(t.download<int32_t>(), expected);
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 0);  // counted by the group only
  EXPECT_EQ(sub->stats()[Collective::Allreduce].calls, 1);

  auto none = comm_->split(rank_ == 0 ? -1 : 1, 0);
  EXPECT_EQ(none == nullptr, rank_ == 0);
}

TEST_P(Collectives, RanksPerNodeOfOneMachineIsTheWorld) {
  EXPECT_EQ(comm_->ranks_per_node(), size_);
}

INSTANTIATE_TEST_SUITE_P(Backends, Collectives, ::testing::ValuesIn(compiled_backends()),
                         backend_test_name);

// MPI counts are int: a message of more elements is refused with a clear error before anything
// is sent (the tensors are never touched, so they need no memory behind them).
TEST(MpiCommunicator, RefusesCountsBeyondInt) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  const int size = comm.size();
  const int64_t huge = int64_t{INT_MAX} + 1;
  std::vector<int64_t> rows(size, 0);
  rows[comm.rank()] = huge;  // to itself: every rank refuses alike, none waits for another
  float dummy = 0;
  Tensor big(&dummy, DType::F32, Device::CPU, Shape{huge, 1});
  expect_error([&] { comm.alltoallv(big, rows, big, rows); }, {"exceed MPI's int count limit"});
  EXPECT_THROW(comm.allreduce(big, ReduceOp::Sum), Error);
  EXPECT_EQ(comm.stats().total().calls, 0);
}

TEST(MpiCommunicator, RefusesTensorsOnAnotherDevice) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  float x = 1;
  Tensor on_gpu(&x, DType::F32, Device::CUDA, Shape{1});
  EXPECT_THROW(comm.allreduce(on_gpu, ReduceOp::Sum), Error);
}

// The blocked-time clock behind the trainer's "blocked in allreduce" share: a rank waiting for
// a late peer accumulates at least the lateness under the collective's kind, and nothing under
// another kind.
TEST(MpiCommunicator, BlockedTimeIsChargedToTheCollectiveWaitedFor) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  if (comm.size() < 2) GTEST_SKIP() << "needs a peer to wait for";
  comm.barrier();
  const double allreduce = comm::blocked_seconds(comm::Collective::Allreduce);
  const double alltoall = comm::blocked_seconds(comm::Collective::AllToAll);
  constexpr double kLate = 0.3;
  if (comm.rank() == 1) std::this_thread::sleep_for(std::chrono::duration<double>(kLate));
  double x = 1;
  comm.allreduce(Tensor(&x, DType::F64, Device::CPU, Shape{1}), ReduceOp::Sum);
  EXPECT_EQ(x, comm.size());
  const double waited = comm::blocked_seconds(comm::Collective::Allreduce) - allreduce;
  if (comm.rank() == 0) {
    EXPECT_GE(waited, 0.8 * kLate);
  }
  EXPECT_GE(waited, 0);
  EXPECT_EQ(comm::blocked_seconds(comm::Collective::AllToAll), alltoall);
}

TEST(MakeCommunicator, CpuGivesMpi) {
  auto comm = comm::make_communicator(MPI_COMM_WORLD, Device::CPU);
  EXPECT_STREQ(comm->backend(), "mpi");
  EXPECT_EQ(comm->size(), world_size());
  EXPECT_EQ(comm->rank(), world_rank());
}

}  // namespace
}  // namespace mowe::test
