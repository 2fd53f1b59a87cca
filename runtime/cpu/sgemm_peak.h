// The sgemm rate this process reaches right now: the denominator of model FLOPs utilisation.
// Measured rather than taken from a data sheet, because what matters is what OpenBLAS achieves
// with this rank's threads while the other ranks of the node run too.
#pragma once

namespace mowe::cpu {

// Best GFLOP/s of repeated square fp32 products (n = 1024) over about `seconds` of wall time,
// with the BLAS threads currently set (set_cpu_threads).
double measure_sgemm_gflops(double seconds = 0.5);

}  // namespace mowe::cpu
