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

// op(x) for a [rows, cols] operand, as on the CPU.
struct Operand {
  int64_t outer, inner;  // rows and columns of op(x)
};
Operand op_shape(const Tensor& x, bool trans, bool batched) {
  int64_t r = batched ? x.dim(-2) : x.rows();
  int64_t c = x.cols();
  return trans ? Operand{c, r} : Operand{r, c};
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
  MOWE_CHECK(a.dtype == b.dtype && a.dtype == c.dtype, "matmul: dtypes differ: {}, {}, {}", a.str(),
             b.str(), c.str());
  Operand oa = op_shape(a, trans_a, false), ob = op_shape(b, trans_b, false);
  MOWE_CHECK(oa.inner == ob.outer && c.rows() == oa.outer && c.cols() == ob.inner,
             "matmul: shapes do not chain: op(a) {}x{}, op(b) {}x{}, c {} (trans_a={}, "
             "trans_b={})",
             oa.outer, oa.inner, ob.outer, ob.inner, c.shape.str(), trans_a, trans_b);
  dispatch_float("matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    gemm(cublas(ctx), trans_a, trans_b, oa.outer, ob.inner, oa.inner, T(alpha), a.ptr<T>(),
         a.cols(), 0, b.ptr<T>(), b.cols(), 0, T(beta), c.ptr<T>(), c.cols(), 0, 1);
  });
}

void CudaBackend::batched_matmul(const Context& ctx, const Tensor& a, const Tensor& b,
                                 const Tensor& c, bool trans_a, bool trans_b, float alpha,
                                 float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_cuda("batched_matmul", *t);
  MOWE_CHECK(a.shape.ndim() == 3 && b.shape.ndim() == 3 && c.shape.ndim() == 3 &&
                 a.dim(0) == b.dim(0) && a.dim(0) == c.dim(0),
             "batched_matmul: expects [G,M,K], [G,K,N], [G,M,N]; got {}, {}, {}", a.str(), b.str(),
             c.str());
  MOWE_CHECK(a.dtype == b.dtype && a.dtype == c.dtype, "batched_matmul: dtypes differ: {}, {}, {}",
             a.str(), b.str(), c.str());
  Operand oa = op_shape(a, trans_a, true), ob = op_shape(b, trans_b, true);
  MOWE_CHECK(oa.inner == ob.outer && c.dim(1) == oa.outer && c.dim(2) == ob.inner,
             "batched_matmul: shapes do not chain: {}, {}, {} (trans_a={}, trans_b={})", a.str(),
             b.str(), c.str(), trans_a, trans_b);
  const int64_t sa = a.dim(1) * a.dim(2), sb = b.dim(1) * b.dim(2), sc = c.dim(1) * c.dim(2);
  dispatch_float("batched_matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    gemm(cublas(ctx), trans_a, trans_b, oa.outer, ob.inner, oa.inner, T(alpha), a.ptr<T>(),
         a.dim(2), sa, b.ptr<T>(), b.dim(2), sb, T(beta), c.ptr<T>(), c.dim(2), sc, a.dim(0));
  });
}

}  // namespace mowe::cuda
