// Error reporting shared by every module. Two kinds of failure, kept apart in code:
//
// - A user's mistake (a config field, a flag, an input or derived file, the command that started
//   the job): MOWE_REQUIRE(cond, fmt, args...), or `throw UserError(...)` where the test is not
//   one condition. The message is ONE line that names the field or file and says what to do; it
//   carries no expression text and no source path, since the user fixes the input, not the code.
// - An internal invariant (a caller broke a function's contract, state that cannot happen):
//   MOWE_CHECK(cond, fmt, args...). It reports the expression, the rank and file:line, because
//   when it fires the program has a bug and the line says where.
//
// Both throw mowe::Error (UserError is one), so every handler catches both alike. A plain
// `throw Error(...)` remains for failures that are neither, such as an I/O error or a library's
// own error; its message is one line too. The MPI, CUDA, cuBLAS and NCCL checks are built from
// the invariant's generator (see comm/mpi_check.h, cuda/cuda_check.h).
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

// Thrown for a user's mistake; what() is the one line the program prints, with no source path.
class UserError : public Error {
 public:
  using Error::Error;
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

// MOWE_CHECK(cond, fmt, args...): an invariant of this program; the message says what broke.
#define MOWE_CHECK(cond, ...)                                                             \
  do {                                                                                    \
    if (!(cond))                                                                          \
      ::mowe::check_failed("check", #cond, fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

// MOWE_REQUIRE(cond, fmt, args...): a user's mistake; throws UserError with the formatted message
// alone (the arguments are formatted only when cond is false).
#define MOWE_REQUIRE(cond, ...)                                     \
  do {                                                              \
    if (!(cond)) throw ::mowe::UserError(fmt::format(__VA_ARGS__)); \
  } while (0)
