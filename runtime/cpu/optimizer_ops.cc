// Reductions and optimizer updates on the CPU: the specification of runtime/cuda/optimizer_ops.cu.
// Formulas come from runtime/math.h; sums accumulate in double, element by element in index
// order, so the reductions equal a naive double loop.
#include <algorithm>
#include <cmath>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/math.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {
namespace {

template <bool kSquares>
double reduce(const char* op, const Tensor& x) {
  check_cpu(op, x);
  check_reduction(op, x);
  double total = 0;
  dispatch_float(Device::CPU, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.ptr<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) {
      const double value = p[i];
      total += kSquares ? value * value : value;
    }
  });
  return total;
}

// One [R, C] slice of Adafactor: p, g [R*C]; row [R], col [C] (factored) or v [R*C].
template <typename T>
struct AdafactorSlice {
  T *p, *row, *col, *v;
  const T* grad;
  int64_t rows, cols;
  const math::AdafactorCoeffs& c;

  T g(int64_t i) const { return grad[i] * T(c.grad_scale); }

  // row[r] and col[c] from the mean of g^2 over the row's columns and the column's rows. Columns
  // are summed a band at a time in row order, so the slice is read once and sums stay in double.
  void update_factors() const {
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += double(g(r * cols + j)) * double(g(r * cols + j));
      row[r] = T(math::adafactor_moment<double>(row[r], s / double(cols), c.beta2,
                                                c.one_minus_beta2, c.eps1));
    }
    constexpr int64_t kBand = 64;
    for (int64_t j0 = 0; j0 < cols; j0 += kBand) {
      const int64_t width = std::min(kBand, cols - j0);
      double s[kBand] = {};
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < width; ++j) {
          const double gj = g(r * cols + j0 + j);
          s[j] += gj * gj;
        }
      }
      for (int64_t j = 0; j < width; ++j) {
        col[j0 + j] = T(math::adafactor_moment<double>(col[j0 + j], s[j] / double(rows), c.beta2,
                                                       c.one_minus_beta2, c.eps1));
      }
    }
  }

  void update_v() const {
    const T beta2 = T(c.beta2), mix = T(c.one_minus_beta2), eps1 = T(c.eps1);
    for (int64_t i = 0, n = rows * cols; i < n; ++i)
      v[i] = math::adafactor_moment(v[i], g(i) * g(i), beta2, mix, eps1);
  }

  // The normalised update of element i (after the statistics were updated).
  T y(int64_t i, T inv_row_mean) const {
    if (v != nullptr) return g(i) / std::sqrt(v[i]);
    return math::adafactor_factored_update(g(i), row[i / cols], col[i % cols], inv_row_mean);
  }

  void run() const {
    const int64_t n = rows * cols;
    double param_ss = 0;  // before the update: the parameter scale uses the current values
    for (int64_t i = 0; i < n; ++i) param_ss += double(p[i]) * double(p[i]);
    T inv_row_mean = 0;
    if (v != nullptr) {
      update_v();
    } else {
      update_factors();
      double row_sum = 0;
      for (int64_t r = 0; r < rows; ++r) row_sum += row[r];
      inv_row_mean = T(double(rows) / row_sum);
    }
    double y_ss = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double yi = y(i, inv_row_mean);
      y_ss += yi * yi;
    }
    const T size = T(math::adafactor_step_size(param_ss / double(n), y_ss / double(n), c));
    for (int64_t i = 0; i < n; ++i) p[i] -= size * y(i, inv_row_mean);
  }
};

}  // namespace

double CpuBackend::sum(const Context&, const Tensor& x) {
  return reduce<false>("sum", x);
}

double CpuBackend::sum_squares(const Context&, const Tensor& x) {
  return reduce<true>("sum_squares", x);
}

void CpuBackend::adamw_update(const Context&, const Tensor& param, const Tensor& grad,
                              const Tensor& m, const Tensor& v, const AdamWStep& step) {
  for (const Tensor* t : {&param, &grad, &m, &v}) check_cpu("adamw_update", *t);
  check_adamw_update(param, grad, m, v, step);
  dispatch_float(Device::CPU, "adamw_update", param.dtype, [&](auto zero) {
    using T = decltype(zero);
    const math::AdamWCoeffs<T> c = adamw_coeffs<T>(step);
    T *p = param.ptr<T>(), *pm = m.ptr<T>(), *pv = v.ptr<T>();
    const T* g = grad.ptr<T>();
    for (int64_t i = 0, n = param.numel(); i < n; ++i)
      math::adamw_update(p[i], pm[i], pv[i], g[i], c);
  });
}

void CpuBackend::adafactor_update(const Context&, const Tensor& param, const Tensor& grad,
                                  const Tensor& row, const Tensor& col, const Tensor& v,
                                  const AdafactorStep& step) {
  for (const Tensor* t : {&param, &grad, &row, &col, &v}) check_cpu("adafactor_update", *t);
  const AdafactorDims d = check_adafactor_update(param, grad, row, col, v, step);
  const math::AdafactorCoeffs c = adafactor_coeffs(step);
  dispatch_float(Device::CPU, "adafactor_update", param.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = d.rows * d.cols;
    for (int64_t b = 0; b < d.batch; ++b) {
      AdafactorSlice<T> slice{param.ptr<T>() + b * n,
                              d.factored ? row.ptr<T>() + b * d.rows : nullptr,
                              d.factored ? col.ptr<T>() + b * d.cols : nullptr,
                              d.factored ? nullptr : v.ptr<T>() + b * n,
                              grad.ptr<T>() + b * n,
                              d.rows,
                              d.cols,
                              c};
      slice.run();
    }
  });
}

}  // namespace mowe::cpu
