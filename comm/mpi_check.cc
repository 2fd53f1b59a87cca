#include "comm/mpi_check.h"

#include <fmt/format.h>

namespace mowe::comm {

std::string mpi_error_string(int status) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(status, text, &len) != MPI_SUCCESS)
    return fmt::format("MPI error {}", status);
  int error_class = status;
  MPI_Error_class(status, &error_class);
  return fmt::format("{} (error class {})", std::string(text, len), error_class);
}

}  // namespace mowe::comm
