// T5 RMSNorm on the CPU: f32 rows through the vector kernels (sums in double), f64 (gradient
// checks) through the scalar formulas.
#include <cmath>
#include <type_traits>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/elementwise_grain.h"
#include "runtime/cpu/simd_kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {

void CpuBackend::rmsnorm_forward(const Context&, const Tensor& x, const Tensor& scale,
                                 const Tensor& out, const Tensor& rstd, double eps) {
  for (const Tensor* t : {&x, &scale, &out, &rstd}) check_cpu("rmsnorm_forward", *t);
  const RowsDims d = check_rmsnorm_forward(x, scale, out, rstd);
  const int64_t n = d.rows, c = d.cols;
  visit_dtype(Device::CPU, "rmsnorm_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *px = x.ptr<T>(), *ps = scale.ptr<T>();
    T *po = out.ptr<T>(), *pr = rstd.ptr<T>();
    // Rows are independent: any split over threads gives the same bits.
    parallel_for(n, rows_grain(c, kGrainStreaming), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = px + r * c;
        if constexpr (std::is_same_v<T, float>) {
          pr[r] = simd::kernels().rmsnorm_row(row, ps, static_cast<float>(eps), po + r * c, c);
        } else {
          T ss = 0;
          for (int64_t i = 0; i < c; ++i) ss += row[i] * row[i];
          T inv = T(1) / std::sqrt(ss / T(c) + T(eps));
          pr[r] = inv;
          for (int64_t i = 0; i < c; ++i) po[r * c + i] = row[i] * inv * ps[i];
        }
      }
    });
  });
}

// With y_i = x_i * r * s_i and r = (mean(x^2) + eps)^-1/2:
// dx_i = r * (g_i s_i) - x_i * r^3 / C * sum_j (g_j s_j x_j),   ds_i += g_i x_i r.
void CpuBackend::rmsnorm_backward(const Context&, const Tensor& dout, const Tensor& x,
                                  const Tensor& scale, const Tensor& rstd, const Tensor& dx,
                                  const Tensor& dscale) {
  for (const Tensor* t : {&dout, &x, &scale, &rstd, &dx, &dscale})
    check_cpu("rmsnorm_backward", *t);
  const RowsDims d = check_rmsnorm_backward(dout, x, scale, rstd, dx, dscale);
  const int64_t n = d.rows, c = d.cols;
  visit_dtype(Device::CPU, "rmsnorm_backward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pg = dout.ptr<T>(), *px = x.ptr<T>(), *ps = scale.ptr<T>(), *pr = rstd.ptr<T>();
    T *pdx = dx.ptr<T>(), *pds = dscale.ptr<T>();
    // One thread: dscale sums over the rows in order.
    for (int64_t r = 0; r < n; ++r) {
      const T *g = pg + r * c, *xr = px + r * c;
      const T inv = pr[r];
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().rmsnorm_row_backward(g, xr, ps, inv, pdx + r * c, pds, c);
      } else {
        T dot = 0;
        for (int64_t i = 0; i < c; ++i) dot += g[i] * ps[i] * xr[i];
        const T k = dot * inv * inv * inv / T(c);
        for (int64_t i = 0; i < c; ++i) {
          pdx[r * c + i] = inv * g[i] * ps[i] - xr[i] * k;
          pds[i] += g[i] * xr[i] * inv;
        }
      }
    }
  });
}

}  // namespace mowe::cpu
