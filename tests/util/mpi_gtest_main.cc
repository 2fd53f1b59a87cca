// main() for multi-rank GoogleTest binaries run by ctest through mpiexec: every rank runs every
// test; rank 0 prints; the exit status is the same on all ranks (failed anywhere = failed; skipped
// only when every case skipped on every rank, as skip_status.h says).
#include <gtest/gtest.h>
#include <mpi.h>

#include "runtime/log.h"
#include "tests/util/skip_status.h"

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
  const mowe::test::CaseCounts counts = mowe::test::case_counts();
  const int status = mowe::test::exit_status(failed, counts);
  // The job's status: failed anywhere, else skipped only where every rank skipped everything.
  int any_failed = 0, all_skipped = 0;
  int skipped_here = status == mowe::test::kAllSkipped ? 1 : 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&skipped_here, &all_skipped, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (failed) fprintf(stderr, "rank %d of %d: tests failed\n", rank, size);
  if (rank == 0) mowe::test::print_skipped(counts);
  MPI_Finalize();
  if (any_failed) return 1;
  return all_skipped ? mowe::test::kAllSkipped : 0;
}
