// Row-major GEMM on raw pointers with leading dimensions (OpenBLAS), for f32 and f64, shared by
// the CPU ops that multiply strided views (attention heads inside [B,T,H,D]).
#pragma once

#include "runtime/tensor.h"

namespace mowe::cpu {

// c[M,N] = alpha * op(a) op(b) + beta * c; lda/ldb/ldc are row strides in elements.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

// Calls f(T{}) with T = float or double for the tensor's dtype; other dtypes are an error.
template <typename F>
void dispatch_float(const char* op, DType dtype, F&& f) {
  if (dtype == DType::F32) {
    f(float{});
  } else if (dtype == DType::F64) {
    f(double{});
  } else {
    MOWE_CHECK(false, "{}: dtype {} is not supported on the CPU backend (f32, f64)", op,
               dtype_name(dtype));
  }
}

}  // namespace mowe::cpu
