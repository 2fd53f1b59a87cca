// Matrix products on OpenBLAS.
#include <cblas.h>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/gemm.h"

namespace mowe::cpu {
namespace {

CBLAS_TRANSPOSE tr(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

// op(x) for a [rows, cols] operand: [M, K] with its row stride.
struct Operand {
  int64_t outer, inner;  // rows and columns of op(x)
};
Operand op_shape(const Tensor& x, bool trans, bool batched) {
  int64_t r = batched ? x.dim(-2) : x.rows();
  int64_t c = x.cols();
  return trans ? Operand{c, r} : Operand{r, c};
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
  MOWE_CHECK(a.dtype == b.dtype && a.dtype == c.dtype, "matmul: dtypes differ: {}, {}, {}", a.str(),
             b.str(), c.str());
  Operand oa = op_shape(a, trans_a, false), ob = op_shape(b, trans_b, false);
  MOWE_CHECK(oa.inner == ob.outer && c.rows() == oa.outer && c.cols() == ob.inner,
             "matmul: shapes do not chain: op(a) {}x{}, op(b) {}x{}, c {} (trans_a={}, "
             "trans_b={})",
             oa.outer, oa.inner, ob.outer, ob.inner, c.shape.str(), trans_a, trans_b);
  dispatch_float("matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    gemm(trans_a, trans_b, oa.outer, ob.inner, oa.inner, T(alpha), a.ptr<T>(), a.cols(), b.ptr<T>(),
         b.cols(), T(beta), c.ptr<T>(), c.cols());
  });
}

void CpuBackend::batched_matmul(const Context&, const Tensor& a, const Tensor& b, const Tensor& c,
                                bool trans_a, bool trans_b, float alpha, float beta) {
  for (const Tensor* t : {&a, &b, &c}) check_cpu("batched_matmul", *t);
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
  const int64_t groups = a.dim(0);
  const int64_t sa = a.dim(1) * a.dim(2), sb = b.dim(1) * b.dim(2), sc = c.dim(1) * c.dim(2);
  dispatch_float("batched_matmul", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t g = 0; g < groups; ++g) {
      gemm(trans_a, trans_b, oa.outer, ob.inner, oa.inner, T(alpha), a.ptr<T>() + g * sa, a.dim(2),
           b.ptr<T>() + g * sb, b.dim(2), T(beta), c.ptr<T>() + g * sc, c.dim(2));
    }
  });
}

}  // namespace mowe::cpu
