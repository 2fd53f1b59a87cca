// Row-major GEMM on raw pointers with leading dimensions (OpenBLAS), for f32 and f64, shared by
// the CPU ops that multiply strided views (attention heads inside [B,T,H,D]).
#pragma once

#include <cstdint>

namespace mowe::cpu {

// c[M,N] = alpha * op(a) op(b) + beta * c; lda/ldb/ldc are row strides in elements.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
          int64_t ldc);

}  // namespace mowe::cpu
