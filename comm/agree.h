// Errors that every rank is likely to hit alike (bad flags, a bad config, a missing file) are
// agreed on with one allreduce, so the job ends cleanly with one message instead of an abort
// banner or, worse, ranks waiting forever for a rank that already left.
#pragma once

#include <mpi.h>

#include <functional>

namespace mowe::comm {

// Runs `step` on every rank of `comm`. Returns true when it succeeded everywhere. Otherwise every
// rank returns false; the error is printed to stderr as "<program>: error on rank R of N: ..."
// by rank 0 alone when rank 0 failed (its message stands for all), else by each failing rank.
bool all_ranks_succeed(MPI_Comm comm, const char* program, const std::function<void()>& step);

}  // namespace mowe::comm
