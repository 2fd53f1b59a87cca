// all_ranks_succeed at every world size: success everywhere, failure on one rank only, failure on
// every rank; all ranks must return the same answer in each case.
#include <gtest/gtest.h>

#include "comm/agree.h"
#include "runtime/check.h"
#include "tests/comm/comm_test_util.h"

namespace mowe {
namespace {

using test::world_rank;
using test::world_size;

TEST(AllRanksSucceed, TrueWhenNoRankThrows) {
  int calls = 0;
  EXPECT_TRUE(comm::all_ranks_succeed(MPI_COMM_WORLD, "test", [&] { ++calls; }));
  EXPECT_EQ(calls, 1);
}

TEST(AllRanksSucceed, EveryRankLearnsThatTheLastRankFailed) {
  const int last = world_size() - 1;
  ::testing::internal::CaptureStderr();
  bool ok = comm::all_ranks_succeed(MPI_COMM_WORLD, "test", [&] {
    if (world_rank() == last) throw Error("disk full");
  });
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(ok);
  if (world_rank() == last) {
    EXPECT_NE(err.find("test: error on rank " + std::to_string(last)), std::string::npos) << err;
    EXPECT_NE(err.find("disk full"), std::string::npos) << err;
  } else {
    EXPECT_EQ(err, "");
  }
}

TEST(AllRanksSucceed, RankZeroSpeaksForAllWhenEveryRankFails) {
  ::testing::internal::CaptureStderr();
  bool ok = comm::all_ranks_succeed(MPI_COMM_WORLD, "test", [] { throw Error("bad config"); });
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(ok);
  EXPECT_EQ(err.empty(), world_rank() != 0) << err;
}

}  // namespace
}  // namespace mowe
