// Reductions and optimizer updates on the CPU: the specification of runtime/cuda/optimizer_ops.cu.
// Formulas come from runtime/math.h; sums accumulate in double. f64 (gradient checks) runs the
// scalar loops, element by element in index order, so its reductions equal a naive double loop.
// f32 runs the vector kernels of simd_kernels.h on the thread pool; its sums are per fixed chunk
// (simd::kSumChunk elements, or a row) combined in index order, so no result depends on the
// number of threads (docs/cpu_kernels.md).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/elementwise_grain.h"
#include "runtime/cpu/simd_kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/math.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {
namespace {

// Grows to the largest request and is then reused: no allocation in a steady-state step. One per
// thread, as slices of a stacked parameter run on different threads. It starts at 64K doubles
// (512 KiB: partial sums of tensors up to 2^27 elements) and doubles, because the sizes asked
// for vary from step to step (runs of touched expert rows) and each growth would allocate.
double* scratch_doubles(int64_t n) {
  thread_local std::vector<double> buffer;
  if (int64_t(buffer.size()) < n)
    buffer.resize(std::max({size_t(n), 2 * buffer.size(), size_t(1) << 16}));
  return buffer.data();
}

// Sums of fixed kSumChunk-element chunks, in parallel, then added in chunk order.
template <class ChunkSum>
double chunked_sum(int64_t n, double* partials, ChunkSum chunk_sum) {
  const int64_t chunks = (n + simd::kSumChunk - 1) / simd::kSumChunk;
  parallel_for(chunks, std::max<int64_t>(1, kGrainStreaming / simd::kSumChunk),
               [&](int64_t c0, int64_t c1) {
                 for (int64_t c = c0; c < c1; ++c) {
                   const int64_t begin = c * simd::kSumChunk;
                   partials[c] = chunk_sum(begin, std::min(n, begin + simd::kSumChunk));
                 }
               });
  double total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += partials[c];
  return total;
}

template <bool kSquares>
double reduce(const char* op, const Tensor& x) {
  check_cpu(op, x);
  check_reduction(op, x);
  double total = 0;
  visit_dtype(Device::CPU, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.ptr<T>();
    const int64_t n = x.numel();
    if constexpr (std::is_same_v<T, float>) {
      const simd::Kernels& k = simd::kernels();
      double* partials = scratch_doubles((n + simd::kSumChunk - 1) / simd::kSumChunk);
      total = chunked_sum(n, partials, [&](int64_t b, int64_t e) {
        return kSquares ? k.sum_squares(p + b, e - b) : k.sum(p + b, e - b);
      });
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const double value = p[i];
        total += kSquares ? value * value : value;
      }
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

// One f32 [R, C] slice of Adafactor with the formulas of AdafactorSlice, the parameter's sum of
// squares fused into a statistics pass: unfactored in two passes (v, sums of p^2 and y^2; the
// update), factored in four (row statistics with p^2; column statistics; sum of y^2; the
// update) instead of five. Work is split by rows, fixed chunks and fixed column bands, and every
// sum is per row or per chunk added in index order, so a slice gives the same bits whether its
// passes run on one thread or many.
struct AdafactorSliceF32 {
  float *p, *row, *col, *v;
  const float* grad;
  int64_t rows, cols;
  const math::AdafactorCoeffs& c;

  static constexpr int64_t kColBand = 256;

  void run() const {
    const simd::Kernels& k = simd::kernels();
    const float gs = float(c.grad_scale);
    const int64_t n = rows * cols;
    double param_ss = 0, y_ss = 0;
    if (v != nullptr) {
      const int64_t chunks = (n + simd::kSumChunk - 1) / simd::kSumChunk;
      double* p2 = scratch_doubles(2 * chunks);
      double* y2 = p2 + chunks;
      const float beta2 = float(c.beta2), mix = float(c.one_minus_beta2), eps1 = float(c.eps1);
      y_ss = chunked_sum(n, y2, [&](int64_t b, int64_t e) {
        double ps = 0, ys = 0;
        k.adafactor_v(grad + b, p + b, v + b, e - b, gs, beta2, mix, eps1, &ps, &ys);
        p2[b / simd::kSumChunk] = ps;
        return ys;
      });
      for (int64_t i = 0; i < chunks; ++i) param_ss += p2[i];
      const float size = step_size(param_ss, y_ss, n);
      parallel_for(n, kGrainStreaming, [&](int64_t b, int64_t e) {
        k.adafactor_v_apply(p + b, grad + b, v + b, e - b, gs, size);
      });
      return;
    }
    double* p2 = scratch_doubles(2 * rows + cols);
    double* y2 = p2 + rows;
    double* col_ss = y2 + rows;
    const int64_t row_grain = rows_grain(cols, kGrainStreaming);
    parallel_for(rows, row_grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        double g2 = 0;
        p2[r] = 0;
        k.adafactor_sums(grad + r * cols, p + r * cols, cols, gs, &g2, &p2[r]);
        row[r] = float(math::adafactor_moment<double>(row[r], g2 / double(cols), c.beta2,
                                                      c.one_minus_beta2, c.eps1));
      }
    });
    // Columns by bands of whole rows: each column sums its rows in row order.
    const int64_t bands = (cols + kColBand - 1) / kColBand;
    parallel_for(bands, std::max<int64_t>(1, bands * kGrainStreaming / std::max<int64_t>(1, n)),
                 [&](int64_t b0, int64_t b1) {
                   const int64_t j0 = b0 * kColBand, j1 = std::min(cols, b1 * kColBand);
                   std::fill(col_ss + j0, col_ss + j1, 0.0);
                   for (int64_t r = 0; r < rows; ++r)
                     k.adafactor_add_squares(grad + r * cols + j0, j1 - j0, gs, col_ss + j0);
                   for (int64_t j = j0; j < j1; ++j) {
                     col[j] = float(math::adafactor_moment<double>(
                         col[j], col_ss[j] / double(rows), c.beta2, c.one_minus_beta2, c.eps1));
                   }
                 });
    double row_sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      param_ss += p2[r];
      row_sum += row[r];
    }
    const float inv_row_mean = float(double(rows) / row_sum);
    parallel_for(rows, row_grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        y2[r] = k.adafactor_row_y2(grad + r * cols, col, cols, gs, row[r] * inv_row_mean);
    });
    for (int64_t r = 0; r < rows; ++r) y_ss += y2[r];
    const float size = step_size(param_ss, y_ss, n);
    parallel_for(rows, row_grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        k.adafactor_row_apply(p + r * cols, grad + r * cols, col, cols, gs, row[r] * inv_row_mean,
                              size);
      }
    });
  }

  float step_size(double param_ss, double y_ss, int64_t n) const {
    return float(math::adafactor_step_size(param_ss / double(n), y_ss / double(n), c));
  }
};

}  // namespace

double CpuBackend::sum(const Context&, const Tensor& x) {
  return reduce<false>("sum", x);
}

double CpuBackend::sum_squares(const Context&, const Tensor& x) {
  return reduce<true>("sum_squares", x);
}

void CpuBackend::decay_toward(const Context&, const Tensor& x, double floor, double factor) {
  check_cpu("decay_toward", x);
  visit_dtype(Device::CPU, "decay_toward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = x.ptr<T>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = T(floor + (double(p[i]) - floor) * factor);
  });
}

void CpuBackend::accumulate_sum_squares(const Context&, const Tensor& x, const Tensor& total) {
  check_cpu("accumulate_sum_squares", x);
  check_cpu("accumulate_sum_squares", total);
  check_accumulate_sum_squares(x, total);
  total.ptr<double>()[0] += reduce<true>("accumulate_sum_squares", x);
}

void CpuBackend::adamw_update(const Context&, const Tensor& param, const Tensor& grad,
                              const Tensor& m, const Tensor& v, const AdamWStep& step) {
  for (const Tensor* t : {&param, &grad, &m, &v}) check_cpu("adamw_update", *t);
  check_adamw_update(param, grad, m, v, step);
  visit_dtype(Device::CPU, "adamw_update", param.dtype, [&](auto zero) {
    using T = decltype(zero);
    const math::AdamWCoeffs<T> c = adamw_coeffs<T>(step);
    T *p = param.ptr<T>(), *pm = m.ptr<T>(), *pv = v.ptr<T>();
    const T* g = grad.ptr<T>();
    parallel_for(param.numel(), kGrainStreaming, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().adamw(p + b, pm + b, pv + b, g + b, e - b, c);
      } else {
        for (int64_t i = b; i < e; ++i) math::adamw_update(p[i], pm[i], pv[i], g[i], c);
      }
    });
  });
}

void CpuBackend::adafactor_update(const Context&, const Tensor& param, const Tensor& grad,
                                  const Tensor& row, const Tensor& col, const Tensor& v,
                                  const AdafactorStep& step) {
  for (const Tensor* t : {&param, &grad, &row, &col, &v}) check_cpu("adafactor_update", *t);
  const AdafactorDims d = check_adafactor_update(param, grad, row, col, v, step);
  const math::AdafactorCoeffs c = adafactor_coeffs(step);
  visit_dtype(Device::CPU, "adafactor_update", param.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = d.rows * d.cols;
    if constexpr (std::is_same_v<T, float>) {
      auto slice = [&](int64_t b) {
        AdafactorSliceF32{param.ptr<T>() + b * n,
                          d.factored ? row.ptr<T>() + b * d.rows : nullptr,
                          d.factored ? col.ptr<T>() + b * d.cols : nullptr,
                          d.factored ? nullptr : v.ptr<T>() + b * n,
                          grad.ptr<T>() + b * n,
                          d.rows,
                          d.cols,
                          c}
            .run();
      };
      // Big slices one after another, each split over the threads; small ones (stacked experts)
      // a group per task, each whole on one thread. Both give the same bits per slice.
      if (n >= kGrainStreaming) {
        for (int64_t b = 0; b < d.batch; ++b) slice(b);
      } else {
        parallel_for(d.batch, std::max<int64_t>(1, kGrainStreaming / std::max<int64_t>(1, n)),
                     [&](int64_t b0, int64_t b1) {
                       for (int64_t b = b0; b < b1; ++b) slice(b);
                     });
      }
      return;
    }
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
