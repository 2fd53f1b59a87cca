// Matrix products on cuBLAS. cuBLAS is column-major: a row-major matrix is its transpose in
// column-major order, so the row-major C = op(A) op(B) is computed as the column-major
// C^T = op(B)^T op(A)^T, i.e. with the operands (and M, N) swapped and the same op flags.
#include <limits>

#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"

namespace mowe::cuda {
namespace {

cublasOperation_t op(bool trans) {
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// cuBLAS takes int sizes; larger products must be split by the caller.
int to_int(int64_t v) {
  MOWE_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(),
             "gemm: size {} does not fit the int sizes of cuBLAS", v);
  return static_cast<int>(v);
}

// A zero-sized dimension makes a row stride 0, which cuBLAS rejects although it is never used.
int ld(int64_t v) {
  return to_int(v > 0 ? v : 1);
}

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const float* alpha, const float* a, int lda, long long sa,
                         const float* b, int ldb, long long sb, const float* beta, float* c,
                         int ldc, long long sc, int batch) {
  if (batch == 1) return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                                   sc, batch);
}

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const double* alpha, const double* a, int lda, long long sa,
                         const double* b, int ldb, long long sb, const double* beta, double* c,
                         int ldc, long long sc, int batch) {
  if (batch == 1) return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                                   sc, batch);
}

}  // namespace

template <typename T>
void gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
          int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  CUBLAS_CHECK(gemm_call(handle, op(trans_b), op(trans_a), to_int(n), to_int(m), to_int(k), &alpha,
                         b, ld(ldb), stride_b, a, ld(lda), stride_a, &beta, c, ld(ldc), stride_c,
                         to_int(batch)));
}

template void gemm<float>(cublasHandle_t, bool, bool, int64_t, int64_t, int64_t, float,
                          const float*, int64_t, int64_t, const float*, int64_t, int64_t, float,
                          float*, int64_t, int64_t, int64_t);
template void gemm<double>(cublasHandle_t, bool, bool, int64_t, int64_t, int64_t, double,
                           const double*, int64_t, int64_t, const double*, int64_t, int64_t, double,
                           double*, int64_t, int64_t, int64_t);

void CudaBackend::matmul(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c,
                         bool trans_a, bool trans_b, float alpha, float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_cuda("matmul", *t);
  const MatmulDims d = check_matmul(a, b, c, trans_a, trans_b);
  visit_dtype(Device::CUDA, "matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    gemm(cublas(ctx), trans_a, trans_b, d.m, d.n, d.k, T(alpha), a.ptr<T>(), a.cols(), 0,
         b.ptr<T>(), b.cols(), 0, T(beta), c.ptr<T>(), c.cols(), 0, 1);
  });
}

void CudaBackend::batched_matmul(const Context& ctx, const Tensor& a, const Tensor& b,
                                 const Tensor& c, bool trans_a, bool trans_b, float alpha,
                                 float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_cuda("batched_matmul", *t);
  const BatchedMatmulDims d = check_batched_matmul(a, b, c, trans_a, trans_b);
  visit_dtype(Device::CUDA, "batched_matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    gemm(cublas(ctx), trans_a, trans_b, d.m, d.n, d.k, T(alpha), a.ptr<T>(), a.dim(2), d.stride_a,
         b.ptr<T>(), b.dim(2), d.stride_b, T(beta), c.ptr<T>(), c.dim(2), d.stride_c, d.groups);
  });
}

}  // namespace mowe::cuda
