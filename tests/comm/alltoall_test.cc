// Flat and hierarchical all-to-all at 1, 2 and 4 ranks: every layout of "nodes" the world size
// allows (4 ranks as 1x4, 2x2, 4x1; 2 ranks as 1x2, 2x1) must give exactly what a flat
// alltoallv gives, take every row back in reverse, and count one message per peer and pass.
#include <gtest/gtest.h>

#include <tuple>

#include "comm/alltoall.h"
#include "tests/comm/comm_test_util.h"
#include "tests/util/expect_error.h"

namespace mowe::test {
namespace {

using comm::AllToAll;
using comm::Collective;
using mowe::testing::expect_error;

// Rows from src to dst, uneven with empty pairs; with 3+ ranks rank 1 sends nothing at all.
int64_t pair_rows(int src, int dst, int size, uint64_t seed) {
  if (size > 2 && src == 1) return 0;
  return static_cast<int64_t>((src * 7 + dst * 3 + seed) % 5);
}

float row_value(int src, int dst, int64_t i, int64_t c) {
  return static_cast<float>(((src * 8 + dst) * 16 + i) * 8 + c);
}

struct Exchange {
  std::vector<int64_t> send_rows, recv_rows;
  std::vector<float> send, expected;
};

Exchange make_exchange(int rank, int size, uint64_t seed, int64_t width,
                       int64_t (*rows)(int, int, int, uint64_t)) {
  Exchange x;
  for (int j = 0; j < size; ++j) {
    x.send_rows.push_back(rows(rank, j, size, seed));
    x.recv_rows.push_back(rows(j, rank, size, seed));
    for (int64_t i = 0; i < x.send_rows[j]; ++i) {
      for (int64_t c = 0; c < width; ++c) x.send.push_back(row_value(rank, j, i, c));
    }
    for (int64_t i = 0; i < x.recv_rows[j]; ++i) {
      for (int64_t c = 0; c < width; ++c) x.expected.push_back(row_value(j, rank, i, c));
    }
  }
  return x;
}

class AllToAllTest : public CommBackendTest {
 protected:
  void SetUp() override {
    CommBackendTest::SetUp();
    if (IsSkipped()) return;
    scratch_ = std::make_unique<Arena>(comm::allocator_for(device()), size_t{1} << 20);
  }

  // Runs x forward and back with `a2a`; returns what the forward pass received.
  std::vector<float> round_trip(AllToAll& a2a, const Exchange& x, int64_t width) {
    const int64_t out_rows = static_cast<int64_t>(x.send.size()) / width;
    const int64_t in_rows = static_cast<int64_t>(x.expected.size()) / width;
    AllToAll::Plan plan = a2a.plan(x.send_rows, x.recv_rows, *scratch_);
    EXPECT_EQ(plan.send_rows(), out_rows);
    EXPECT_EQ(plan.recv_rows(), in_rows);
    DeviceTensor send(device(), Shape{out_rows, width}, DType::F32);
    DeviceTensor recv(device(), Shape{in_rows, width}, DType::F32);
    DeviceTensor back(device(), Shape{out_rows, width}, DType::F32);
    send.upload(x.send);
    a2a.run(plan, send, recv, *scratch_);
    a2a.run_reverse(plan, recv, back, *scratch_);
    EXPECT_EQ(back.download<float>(), x.send) << "run_reverse must undo run";
    EXPECT_EQ(scratch_->bytes_in_use(), 0u);
    return recv.download<float>();
  }

  // Every ranks-per-node value that divides the world size.
  std::vector<int> layouts() const {
    std::vector<int> out;
    for (int l = 1; l <= size_; ++l) {
      if (size_ % l == 0) out.push_back(l);
    }
    return out;
  }

  std::unique_ptr<Arena> scratch_;
};

TEST_P(AllToAllTest, HierarchicalGivesExactlyTheFlatResult) {
  AllToAll flat(*comm_, AllToAll::Algorithm::Flat);
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const Exchange x = make_exchange(rank_, size_, seed, 3, pair_rows);
    const std::vector<float> reference = round_trip(flat, x, 3);
    ASSERT_EQ(reference, x.expected) << "flat, seed " << seed;
    for (int l : layouts()) {
      AllToAll hier(*comm_, AllToAll::Algorithm::Hierarchical, l);
      EXPECT_EQ(hier.ranks_per_node(), l);
      EXPECT_EQ(hier.num_nodes(), size_ / l);
      EXPECT_EQ(round_trip(hier, x, 3), reference) << l << " ranks per node, seed " << seed;
    }
  }
}

TEST_P(AllToAllTest, RanksPerNodeFromTheSystem) {
  AllToAll hier(*comm_, AllToAll::Algorithm::Hierarchical, 0);
  EXPECT_EQ(hier.ranks_per_node(), size_);  // the tests run on one machine
  const Exchange x = make_exchange(rank_, size_, 3, 2, pair_rows);
  EXPECT_EQ(round_trip(hier, x, 2), x.expected);
}

TEST_P(AllToAllTest, RefusesAWorldSizeThatNodesCannotDivide) {
  SCOPED_TRACE(::testing::Message() << "3 ranks per node cannot divide " << size_);
  expect_error([&] { AllToAll hier(*comm_, AllToAll::Algorithm::Hierarchical, 3); },
               {"must divide the world size"});
}

int64_t all_pairs(int src, int dst, int, uint64_t seed) {
  return 1 + static_cast<int64_t>((src + 2 * dst + seed) % 3);
}

TEST_P(AllToAllTest, OneMessagePerPeerAndPassWhateverTheLayout) {
  const Exchange x = make_exchange(rank_, size_, 1, 4, all_pairs);
  AllToAll flat(*comm_, AllToAll::Algorithm::Flat);
  round_trip(flat, x, 4);
  EXPECT_EQ(flat.stats().calls, 2);
  EXPECT_EQ(flat.stats().messages, 2 * (size_ - 1));
  EXPECT_EQ(flat.plan_stats().messages, 0);
  for (int l : layouts()) {
    AllToAll hier(*comm_, AllToAll::Algorithm::Hierarchical, l);
    round_trip(hier, x, 4);
    const int nodes = size_ / l;
    EXPECT_EQ(hier.stats().calls, 2);
    EXPECT_EQ(hier.stats().messages, 2 * ((l - 1) + (nodes - 1))) << l << " ranks per node";
    // The count exchange inside the node, once per plan (only when both stages are needed).
    EXPECT_EQ(hier.plan_stats().messages, (l > 1 && nodes > 1) ? l - 1 : 0);
  }
}

// A MoWE dispatch in miniature: tokens go to one of E experts, expert e lives on rank e % P, and
// rows are sorted by (rank, expert). However many experts there are, one pass sends one message
// to each peer rank: the all-to-all moves rank-to-rank blocks, never per-expert messages.
TEST_P(AllToAllTest, MessagesPerPassDoNotDependOnTheNumberOfExperts) {
  constexpr int64_t kTokens = 256, kWidth = 8;
  for (int64_t experts : {int64_t{4}, int64_t{64}, int64_t{4096}}) {
    // Every rank computes every rank's token-to-rank counts from (seed, rank).
    std::vector<std::vector<int64_t>> counts(size_, std::vector<int64_t>(size_, 0));
    for (int src = 0; src < size_; ++src) {
      for (int64_t t = 0; t < kTokens; ++t) {
        const int64_t expert = (t * 2654435761 + src * 40503) % experts;
        ++counts[src][expert % size_];
      }
    }
    std::vector<int64_t> send_rows = counts[rank_], recv_rows(size_);
    for (int src = 0; src < size_; ++src) recv_rows[src] = counts[src][rank_];
    for (int64_t n : send_rows) ASSERT_GT(n, 0) << "every rank must receive tokens";
    for (auto algorithm : {AllToAll::Algorithm::Flat, AllToAll::Algorithm::Hierarchical}) {
      const int l = (algorithm == AllToAll::Algorithm::Flat || size_ < 4) ? 1 : 2;
      AllToAll a2a(*comm_, algorithm, l);
      AllToAll::Plan plan = a2a.plan(send_rows, recv_rows, *scratch_);
      DeviceTensor send(device(), Shape{kTokens, kWidth}, DType::F32);
      DeviceTensor recv(device(), Shape{plan.recv_rows(), kWidth}, DType::F32);
      a2a.run(plan, send, recv, *scratch_);          // dispatch
      a2a.run_reverse(plan, recv, send, *scratch_);  // combine
      const int64_t per_pass =
          algorithm == AllToAll::Algorithm::Flat ? size_ - 1 : (l - 1) + (size_ / l - 1);
      EXPECT_EQ(a2a.stats().messages, 2 * per_pass)
          << experts << " experts, " << comm::algorithm_name(algorithm);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, AllToAllTest, ::testing::ValuesIn(compiled_backends()),
                         backend_test_name);

}  // namespace
}  // namespace mowe::test
