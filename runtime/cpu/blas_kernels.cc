#include "runtime/cpu/blas_kernels.h"

#include <cblas.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mowe::cpu {
namespace {

// Set by the restart to the set OpenBLAS had chosen, for the report of the restarted process.
constexpr const char* kRestartedFrom = "MOWE_BLAS_RESTARTED_FROM";
// Set by a restart that failed (its errno text), for the report.
std::string restart_error;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// OpenBLAS's generic x86-64 sets, the ones it falls back to on a CPU it does not recognise.
bool is_fallback(const std::string& set) {
  static const char* const kGeneric[] = {"prescott", "core2", "penryn",      "dunnington",
                                         "nehalem",  "atom",  "sandybridge", "unknown"};
  const std::string s = lower(set);
  return std::any_of(std::begin(kGeneric), std::end(kGeneric),
                     [&](const char* g) { return s == g; });
}

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

std::string blas_kernel_set() {
  const char* name = openblas_get_corename();
  return name ? std::string(name) : std::string("unknown");
}

std::string better_blas_kernel_set() {
  if (!is_fallback(blas_kernel_set())) return "";
  // GCC's checks include the OS's support (XSAVE state) for the AVX and AVX-512 registers.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512cd"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

void restart_with_better_blas_kernels(char** argv) {
  if (env_set("OPENBLAS_CORETYPE") || env_set("MOWE_KEEP_BLAS_KERNELS")) return;
  const std::string better = better_blas_kernel_set();
  if (better.empty()) return;
  setenv("OPENBLAS_CORETYPE", better.c_str(), 1);
  setenv(kRestartedFrom, blas_kernel_set().c_str(), 1);
  // The binary's own path, not /proc/self/exe: the process name (comm) is the basename of what
  // is executed, and tools find the ranks by it (pkill -x mowe_pretrain, top, Slurm's output).
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n > 0) {
    path[n] = '\0';
    execv(path, argv);
  }
  // Still here: the restart failed. Run on with OpenBLAS's choice and say so in the report.
  restart_error = std::strerror(errno);
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kRestartedFrom);
}

std::string blas_kernel_report() {
  const std::string set = blas_kernel_set();
  if (env_set(kRestartedFrom))
    return fmt::format(
        "OpenBLAS kernels: {} (OpenBLAS chose its generic {} set on this CPU; "
        "restarted with OPENBLAS_CORETYPE={}, MOWE_KEEP_BLAS_KERNELS=1 keeps "
        "OpenBLAS's choice)",
        set, std::getenv(kRestartedFrom), std::getenv("OPENBLAS_CORETYPE"));
  if (env_set("OPENBLAS_CORETYPE"))
    return fmt::format("OpenBLAS kernels: {} (OPENBLAS_CORETYPE={} in the environment)", set,
                       std::getenv("OPENBLAS_CORETYPE"));
  const std::string better = better_blas_kernel_set();
  if (better.empty()) return fmt::format("OpenBLAS kernels: {} (OpenBLAS's choice)", set);
  const std::string why = !restart_error.empty() ? "the restart with them failed: " + restart_error
                          : env_set("MOWE_KEEP_BLAS_KERNELS")
                              ? "MOWE_KEEP_BLAS_KERNELS is set"
                              : "this program keeps OpenBLAS's choice";
  return fmt::format(
      "OpenBLAS kernels: {}, a generic set, though this CPU runs the faster {} "
      "set ({}); set OPENBLAS_CORETYPE={} to use it",
      set, better, why, better);
}

bool blas_kernels_fall_short() {
  return !env_set("OPENBLAS_CORETYPE") && !better_blas_kernel_set().empty();
}

}  // namespace mowe::cpu
