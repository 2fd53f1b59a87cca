// main() for multi-rank GoogleTest binaries run by ctest through mpiexec: every rank runs every
// test; rank 0 prints; the exit status is the same on all ranks (failed anywhere = failed).
#include <gtest/gtest.h>
#include <mpi.h>

#include "runtime/log.h"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  mowe::log::init({.rank = rank, .world_size = size});
  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (failed) fprintf(stderr, "rank %d of %d: tests failed\n", rank, size);
  MPI_Finalize();
  return any_failed;
}
