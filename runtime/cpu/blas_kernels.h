// Which kernel set OpenBLAS runs, and a restart that corrects a fallback.
//
// OpenBLAS (built with DYNAMIC_ARCH, as Debian's is) picks its kernel set once, when the library
// loads (before main), from the CPU model it recognises. 0.3.21 does not recognise recent Xeons
// and falls back to its SSE3 "Prescott" kernels, whose sgemm runs at a fifth of its AVX-512
// ("SkylakeX") kernels' rate on the same core. The only supported way to choose is the
// OPENBLAS_CORETYPE variable, read while the library loads, so a program that finds the
// fallback restarts itself once with the variable set: before MPI_Init, so that the process (same
// pid, same environment otherwise) is still the one the launcher started.
//
//   int main(int argc, char** argv) {
//     mowe::cpu::restart_with_better_blas_kernels(argv);  // may not return (execv)
//     MPI_Init(&argc, &argv);
//     ... log::init ...; log the report, as a warning where blas_kernels_fall_short()
#pragma once

#include <string>

namespace mowe::cpu {

// The kernel set OpenBLAS loaded ("Prescott", "Haswell", "SkylakeX", ...), as it names it.
std::string blas_kernel_set();

// The better set this CPU can run where OpenBLAS fell back to a generic one ("SkylakeX" with
// AVX-512 F/BW/DQ/VL/CD usable by the OS, "Haswell" with AVX2 and FMA), else "" (keep).
std::string better_blas_kernel_set();

// Re-executes this program (its own binary, the same argv and process name) with OPENBLAS_CORETYPE set to
// better_blas_kernel_set() when there is one, unless OPENBLAS_CORETYPE is already set (the
// user's choice, or this restart's) or MOWE_KEEP_BLAS_KERNELS=1. Returns when nothing is to be
// done or the restart failed (blas_kernel_report says which).
void restart_with_better_blas_kernels(char** argv);

// One line for the log: the kernel set in use and why (OpenBLAS's own choice, the user's
// OPENBLAS_CORETYPE, or this program's restart from a fallback), with a hint where a better set
// is left unused.
std::string blas_kernel_report();

// True where a better set is left unused without the user asking for it (log the report as a
// warning then).
bool blas_kernels_fall_short();

}  // namespace mowe::cpu
