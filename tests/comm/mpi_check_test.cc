// MPI_CHECK on every rank: a failing MPI call names the call, the MPI error and the rank.
#include <gtest/gtest.h>

#include <string>

#include "comm/mpi_check.h"
#include "tests/util/expect_error.h"

namespace mowe {
namespace {

using testing::expect_error;

TEST(MpiCheck, SuccessfulCallPasses) {
  int rank = -1;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  EXPECT_GE(rank, 0);
}

TEST(MpiCheck, FailedCallThrowsWithRankAndExpression) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int value = 1, result = 0;
  // A negative count is invalid on every rank, so no rank blocks in the collective.
  expect_error(
      [&] { MPI_CHECK(MPI_Allreduce(&value, &result, -1, MPI_INT, MPI_SUM, MPI_COMM_WORLD)); },
      {"MPI failed on rank " + std::to_string(rank), "MPI_Allreduce(&value, &result, -1",
       "MPI_ERR_COUNT"});
}

}  // namespace
}  // namespace mowe
