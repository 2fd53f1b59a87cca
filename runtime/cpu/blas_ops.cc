// Matrix products on OpenBLAS.
#include <cblas.h>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {
namespace {

CBLAS_TRANSPOSE tr(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

}  // namespace

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void CpuBackend::matmul(const Context&, const Tensor& a, const Tensor& b, const Tensor& c,
                        bool trans_a, bool trans_b, float alpha, float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_cpu("matmul", *t);
  const MatmulDims d = check_matmul(a, b, c, trans_a, trans_b);
  visit_dtype(Device::CPU, "matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    gemm(trans_a, trans_b, d.m, d.n, d.k, T(alpha), a.ptr<T>(), a.cols(), b.ptr<T>(), b.cols(),
         T(beta), c.ptr<T>(), c.cols());
  });
}

void CpuBackend::batched_matmul(const Context&, const Tensor& a, const Tensor& b, const Tensor& c,
                                bool trans_a, bool trans_b, float alpha, float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_cpu("batched_matmul", *t);
  const BatchedMatmulDims d = check_batched_matmul(a, b, c, trans_a, trans_b);
  visit_dtype(Device::CPU, "batched_matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t g = 0; g < d.groups; ++g) {
      gemm(trans_a, trans_b, d.m, d.n, d.k, T(alpha), a.ptr<T>() + g * d.stride_a, a.dim(2),
           b.ptr<T>() + g * d.stride_b, b.dim(2), T(beta), c.ptr<T>() + g * d.stride_c, c.dim(2));
    }
  });
}

}  // namespace mowe::cpu

namespace mowe {
int set_cpu_threads(int threads) {
  MOWE_CHECK(threads >= 1, "CPU threads must be >= 1, not {}", threads);
  openblas_set_num_threads(threads);
  // The element-wise pool takes the same cores between BLAS calls (thread_pool.h).
  cpu::set_pool_threads(openblas_get_num_threads());
  return openblas_get_num_threads();
}
int cpu_threads() {
  return openblas_get_num_threads();
}
}  // namespace mowe
