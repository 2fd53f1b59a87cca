// MPI_CHECK(call): MPI errors reported like every other failure (expression, file, line, rank).
// Communicators set MPI_ERRORS_RETURN so that failures reach this check instead of aborting.
#pragma once

#include <mpi.h>

#include <string>

#include "runtime/check.h"

namespace mowe::comm {
inline bool mpi_ok(int status) {
  return status == MPI_SUCCESS;
}
std::string mpi_error_string(int status);  // "MPI_ERR_COUNT: invalid count argument"
}  // namespace mowe::comm

#define MPI_CHECK(call) \
  MOWE_CHECK_GEN("MPI", call, ::mowe::comm::mpi_ok, ::mowe::comm::mpi_error_string)
