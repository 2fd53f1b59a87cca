// Element-wise CPU work, the scalar f32 loops the CPU backend used to run (copied here as the
// baseline) against its vector kernels on the thread pool at 1 and 2 threads: GELU forward and
// backward, softmax rows, AdamW, Adafactor (factored and not), sum of squares. Interleaved, best
// of --reps; prints G elements/s and the speed-up over the scalar loop.
//
//   build/bin/mowe_bench_elementwise [--reps 15]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/math.h"
#include "runtime/memory.h"
#include "runtime/op_checks.h"

namespace mowe {
namespace {

// ---- the old scalar loops ----------------------------------------------------------------------
void old_softmax_row(float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

// One [R, C] slice of the old Adafactor loop (five passes).
void old_adafactor_slice(float* p, float* row, float* col, float* v, const float* grad,
                         int64_t rows, int64_t cols, const math::AdafactorCoeffs& c) {
  auto g = [&](int64_t i) { return grad[i] * float(c.grad_scale); };
  const int64_t n = rows * cols;
  double param_ss = 0;
  for (int64_t i = 0; i < n; ++i) param_ss += double(p[i]) * double(p[i]);
  float inv_row_mean = 0;
  if (v != nullptr) {
    for (int64_t i = 0; i < n; ++i)
      v[i] = math::adafactor_moment(v[i], g(i) * g(i), float(c.beta2), float(c.one_minus_beta2),
                                    float(c.eps1));
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += double(g(r * cols + j)) * double(g(r * cols + j));
      row[r] = float(math::adafactor_moment<double>(row[r], s / double(cols), c.beta2,
                                                    c.one_minus_beta2, c.eps1));
    }
    constexpr int64_t kBand = 64;
    for (int64_t j0 = 0; j0 < cols; j0 += kBand) {
      const int64_t width = std::min(kBand, cols - j0);
      double s[kBand] = {};
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < width; ++j)
          s[j] += double(g(r * cols + j0 + j)) * g(r * cols + j0 + j);
      for (int64_t j = 0; j < width; ++j)
        col[j0 + j] = float(math::adafactor_moment<double>(col[j0 + j], s[j] / double(rows),
                                                           c.beta2, c.one_minus_beta2, c.eps1));
    }
    double row_sum = 0;
    for (int64_t r = 0; r < rows; ++r) row_sum += row[r];
    inv_row_mean = float(double(rows) / row_sum);
  }
  auto y = [&](int64_t i) {
    if (v != nullptr) return g(i) / std::sqrt(v[i]);
    return math::adafactor_factored_update(g(i), row[i / cols], col[i % cols], inv_row_mean);
  };
  double y_ss = 0;
  for (int64_t i = 0; i < n; ++i) y_ss += double(y(i)) * double(y(i));
  const float size = float(math::adafactor_step_size(param_ss / double(n), y_ss / double(n), c));
  for (int64_t i = 0; i < n; ++i) p[i] -= size * y(i);
}

// ---- harness -----------------------------------------------------------------------------------
Buffer random_f32(Shape shape, uint32_t seed, float lo, float hi) {
  Buffer b(host_allocator(), shape, DType::F32);
  float* p = b.tensor().ptr<float>();
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (int64_t i = 0; i < b.tensor().numel(); ++i) {
    s = mix64(s);
    p[i] = lo + (hi - lo) * float(s >> 40) * (1.0f / 16777216.0f);
  }
  return b;
}

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Case {
  std::string name;
  int64_t elements;
  std::function<void()> old_loop, new_op;
};

}  // namespace
}  // namespace mowe

int main(int argc, char** argv) {
  using namespace mowe;
  int reps = 15;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
  Backend& cpu = cpu_backend();

  // T5 d_ff 1024 over 4,096 tokens; attention rows of 128 keys; ~8M parameters.
  const int64_t tokens = 4096, dff = 1024, keys = 128, params = 8 << 20;
  Buffer x = random_f32({tokens, dff}, 1, -4, 4), dy = random_f32({tokens, dff}, 2, -1, 1);
  Buffer y(host_allocator(), {tokens, dff}, DType::F32),
      dx(host_allocator(), {tokens, dff}, DType::F32);
  Buffer scores = random_f32({tokens * dff / keys, keys}, 3, -8, 8);
  Buffer probs(host_allocator(), scores.tensor().shape, DType::F32);
  Buffer p = random_f32({8, 1024, 1024}, 4, -1, 1), g = random_f32({8, 1024, 1024}, 5, -1, 1);
  Buffer m = random_f32({8, 1024, 1024}, 6, -0.1f, 0.1f),
         v = random_f32({8, 1024, 1024}, 7, 0, 0.01f);
  Buffer row = random_f32({8, 1024}, 8, 0.1f, 1), col = random_f32({8, 1024}, 9, 0.1f, 1);
  Buffer pv = random_f32({params}, 10, -1, 1), gv = random_f32({params}, 11, -1, 1),
         vv = random_f32({params}, 12, 0.001f, 0.01f);
  const int64_t n = tokens * dff;
  const AdamWStep adamw{.lr = 1e-4, .weight_decay = 0.01, .step = 10};
  const AdafactorStep adafactor{.lr = 1e-4, .step = 10};
  const math::AdamWCoeffs<float> ac = adamw_coeffs<float>(adamw);
  const math::AdafactorCoeffs fc = adafactor_coeffs(adafactor);
  float *px = x.tensor().ptr<float>(), *pdy = dy.tensor().ptr<float>(),
        *py = y.tensor().ptr<float>(), *pdx = dx.tensor().ptr<float>();

  std::vector<Case> cases = {
      {"gelu forward", n,
       [&] {
         for (int64_t i = 0; i < n; ++i) py[i] = math::gelu(px[i]);
       },
       [&] { cpu.gelu_forward({}, x, y); }},
      {"gelu backward", n,
       [&] {
         for (int64_t i = 0; i < n; ++i) pdx[i] = pdy[i] * math::gelu_grad(px[i]);
       },
       [&] { cpu.gelu_backward({}, dy, x, dx); }},
      {"softmax rows of 128", n,
       [&] {
         const float* s = scores.tensor().ptr<float>();
         float* o = probs.tensor().ptr<float>();
         std::copy_n(s, n, o);
         for (int64_t r = 0; r < n / keys; ++r) old_softmax_row(o + r * keys, keys);
       },
       [&] { cpu.softmax_forward({}, scores, probs); }},
      {"adamw", p.tensor().numel(),
       [&] {
         float *pp = p.tensor().ptr<float>(), *pm = m.tensor().ptr<float>(),
               *pv2 = v.tensor().ptr<float>();
         const float* pg = g.tensor().ptr<float>();
         for (int64_t i = 0; i < p.tensor().numel(); ++i)
           math::adamw_update(pp[i], pm[i], pv2[i], pg[i], ac);
       },
       [&] { cpu.adamw_update({}, p, g, m, v, adamw); }},
      {"adafactor factored 8x1024x1024", p.tensor().numel(),
       [&] {
         for (int64_t b = 0; b < 8; ++b) {
           old_adafactor_slice(p.tensor().ptr<float>() + b * (1 << 20),
                               row.tensor().ptr<float>() + b * 1024,
                               col.tensor().ptr<float>() + b * 1024, nullptr,
                               g.tensor().ptr<float>() + b * (1 << 20), 1024, 1024, fc);
         }
       },
       [&] { cpu.adafactor_update({}, p, g, row, col, {}, adafactor); }},
      {"adafactor unfactored 8M", params,
       [&] {
         old_adafactor_slice(pv.tensor().ptr<float>(), nullptr, nullptr, vv.tensor().ptr<float>(),
                             gv.tensor().ptr<float>(), 1, params, fc);
       },
       [&] { cpu.adafactor_update({}, pv, gv, {}, {}, vv, adafactor); }},
      {"sum_squares 8M", p.tensor().numel(),
       [&] {
         const float* pp = p.tensor().ptr<float>();
         double s = 0;
         for (int64_t i = 0; i < p.tensor().numel(); ++i) s += double(pp[i]) * double(pp[i]);
         volatile double sink = s;
         (void)sink;
       },
       [&] {
         volatile double sink = cpu.sum_squares({}, p);
         (void)sink;
       }},
  };

  const int saved = cpu::pool_threads();
  std::printf("best of %d, interleaved; G elements/s (speed-up over the scalar loop)\n", reps);
  std::printf("| op | elements | scalar loop | vector, 1 thread | vector, 2 threads |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: |\n");
  for (const Case& c : cases) {
    double best_old = 1e30, best1 = 1e30, best2 = 1e30;
    for (int r = 0; r < reps; ++r) {
      best_old = std::min(best_old, seconds(c.old_loop));
      cpu::set_pool_threads(1);
      best1 = std::min(best1, seconds(c.new_op));
      cpu::set_pool_threads(2);
      best2 = std::min(best2, seconds(c.new_op));
    }
    const double e = double(c.elements) * 1e-9;
    std::printf("| %s | %lld | %.3f | %.3f (%.1fx) | %.3f (%.1fx) |\n", c.name.c_str(),
                static_cast<long long>(c.elements), e / best_old, e / best1, best_old / best1,
                e / best2, best_old / best2);
    std::fflush(stdout);
  }
  cpu::set_pool_threads(saved);
  return 0;
}
