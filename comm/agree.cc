#include "comm/agree.h"

#include <cstdio>
#include <exception>
#include <string>

#include "comm/mpi_check.h"

namespace mowe::comm {

bool all_ranks_succeed(MPI_Comm comm, const char* program, const std::function<void()>& step) {
  int rank = 0, size = 1;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_CHECK(MPI_Comm_size(comm, &size));
  std::string error;
  try {
    step();
  } catch (const std::exception& e) {
    error = e.what();
  }
  // [any rank failed, rank 0 failed]
  int mine[2] = {error.empty() ? 0 : 1, (rank == 0 && !error.empty()) ? 1 : 0};
  int all[2] = {0, 0};
  MPI_CHECK(MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, comm));
  if (!error.empty() && (rank == 0 || all[1] == 0)) {
    std::fprintf(stderr, "%s: error on rank %d of %d: %s\n", program, rank, size, error.c_str());
  }
  return all[0] == 0;
}

}  // namespace mowe::comm
