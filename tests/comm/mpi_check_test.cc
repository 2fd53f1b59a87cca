// MPI_CHECK on every rank: a failing MPI call names the call, the MPI error and the rank.
#include <gtest/gtest.h>

#include <string>

#include "comm/mpi_check.h"

namespace mowe {
namespace {

TEST(MpiCheck, SuccessfulCallPasses) {
  int rank = -1;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  EXPECT_GE(rank, 0);
}

TEST(MpiCheck, FailedCallThrowsWithRankAndExpression) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int value = 1, result = 0;
  try {
    // A negative count is invalid on every rank, so no rank blocks in the collective.
    MPI_CHECK(MPI_Allreduce(&value, &result, -1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    FAIL() << "must throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("MPI failed on rank " + std::to_string(rank)), std::string::npos) << msg;
    EXPECT_NE(msg.find("MPI_Allreduce(&value, &result, -1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("MPI_ERR_COUNT"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace mowe
