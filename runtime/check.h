// Error reporting shared by every module: one exception type and one check-macro generator from
// which the MPI, CUDA, cuBLAS and NCCL checks are built (see comm/mpi_check.h, cuda/cuda_check.h).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace mowe {

// Thrown by every failed check; what() is the one-line message also written to the log.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Logs "<lib> failed on rank R: <expr>: <detail> (file:line)" and throws Error with that text.
[[noreturn]] void check_failed(const char* lib, const char* expr, const std::string& detail,
                               const char* file, int line);

}  // namespace mowe

// MOWE_CHECK_GEN(lib, expr, is_ok, describe): evaluates expr once; when is_ok(status) is false,
// reports describe(status) with the expression text, file, line and rank, then throws.
#define MOWE_CHECK_GEN(lib, expr, is_ok, describe)                                  \
  do {                                                                              \
    auto mowe_status_ = (expr);                                                     \
    if (!(is_ok(mowe_status_)))                                                     \
      ::mowe::check_failed(lib, #expr, describe(mowe_status_), __FILE__, __LINE__); \
  } while (0)

// MOWE_CHECK(cond, fmt, args...): an invariant of this program; the message says what to do.
#define MOWE_CHECK(cond, ...)                                                             \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::mowe::check_failed("check", #cond, fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)
