// The CPU backend: OpenBLAS for products; for the rest, f32 vector kernels on the thread pool
// (simd_kernels.h, thread_pool.h; docs/cpu_kernels.md) and the scalar formulas of math.h for f64.
// It is the specification the CUDA backend is tested against.
#pragma once

#include "runtime/backend.h"

namespace mowe::cpu {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  const char* name() const override { return "cpu"; }

  // Every op of runtime/backend_ops.def, defined in runtime/cpu/*_ops.cc.
#define MOWE_BACKEND_OP(return_type, name, parameters) return_type name parameters override;
#include "runtime/backend_ops.def"
#undef MOWE_BACKEND_OP
};

// Softmax of one row in place over n values: shared by softmax_forward and attention.
template <typename T>
void softmax_row(T* x, int64_t n);
// dx = y * (dy - <dy, y>) for one row: shared by softmax_backward and attention.
template <typename T>
void softmax_row_backward(const T* y, const T* dy, T* dx, int64_t n);

// Checks that a tensor lives on the CPU (ops never touch device memory from the host).
void check_cpu(const char* op, const Tensor& t);

}  // namespace mowe::cpu
