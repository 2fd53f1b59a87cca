// The kernels of simd_kernels.h written once over a vector type V, included only by
// simd_kernels_avx512.cc, simd_kernels_avx2.cc and simd_kernels_sse2.cc after each defines its V.
// Everything is in an anonymous namespace: the translation units are built for different
// instruction sets, so no function may be shared between them by the linker. For that reason
// this file calls no inline function of a standard header either.
//
// V provides: type F (L floats), load, store, set1, add, sub, mul, div, sqrt, min, max,
// fmadd(a,b,c) = a*b+c, fnmadd(a,b,c) = c-a*b, tanh, exp, keep_first(v, k) (lanes >= k zeroed),
// hmax, and a double accumulator D (zero_d, add_d, add_sq_d, add_prod_d, hsum_d); add_sq_to(acc, v)
// adds the squares of v's lanes to acc[0..L).
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/cpu/simd_kernels.h"

namespace mowe::cpu::simd {
namespace {

constexpr int L = V::L;
using F = V::F;
using D = V::D;

// Applies f to NI input vectors giving NO output vectors over n elements. The last partial
// vector goes through f as a zero-padded copy, so every element sees the same arithmetic.
template <int NI, int NO, class Fn>
inline void map(int64_t n, const float* const (&in)[NI], float* const (&out)[NO], Fn f) {
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    F a[NI], r[NO];
    for (int k = 0; k < NI; ++k) a[k] = V::load(in[k] + i);
    f(a, r);
    for (int k = 0; k < NO; ++k) V::store(out[k] + i, r[k]);
  }
  if (i == n) return;
  const int64_t rest = n - i;
  alignas(64) float bin[NI][L], bout[NO][L];
  F a[NI], r[NO];
  for (int k = 0; k < NI; ++k) {
    std::memset(bin[k], 0, sizeof(bin[k]));
    std::memcpy(bin[k], in[k] + i, size_t(rest) * sizeof(float));
    a[k] = V::load(bin[k]);
  }
  f(a, r);
  for (int k = 0; k < NO; ++k) {
    V::store(bout[k], r[k]);
    std::memcpy(out[k] + i, bout[k], size_t(rest) * sizeof(float));
  }
}

// Like map without outputs: f(a, valid) with valid = lanes in range (L but for the last vector).
template <int NI, class Fn>
inline void scan(int64_t n, const float* const (&in)[NI], Fn f) {
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    F a[NI];
    for (int k = 0; k < NI; ++k) a[k] = V::load(in[k] + i);
    f(a, L);
  }
  if (i == n) return;
  const int64_t rest = n - i;
  alignas(64) float bin[NI][L];
  F a[NI];
  for (int k = 0; k < NI; ++k) {
    std::memset(bin[k], 0, sizeof(bin[k]));
    std::memcpy(bin[k], in[k] + i, size_t(rest) * sizeof(float));
    a[k] = V::load(bin[k]);
  }
  f(a, int(rest));
}

inline F masked(F v, int valid) {
  return valid == L ? v : V::keep_first(v, valid);
}

// ---- GELU (tanh form, math::gelu) ------------------------------------------------------------
// With y = k x (1 + c x^2) (the same polynomial as k (x + c x^3)), 0.5 (1 + tanh y) is the
// logistic s = 1 / (1 + e), e = exp(-2y), so gelu = x s and gelu' = s + 2 x y' s (1 - s), where
// 1 - s = e s. One exp and one division cost about half of SLEEF's 1-ulp tanh, and the logistic
// form does not cancel where tanh nears -1 (docs/cpu_kernels.md gives the bounds).
constexpr float kGeluK = 0.7978845608028654f, kGeluC = 0.044715f;

struct GeluParts {
  F x, s, e, x2;  // x, the logistic, exp(-2y), x^2
};
inline GeluParts gelu_parts(F x) {
  const F x2 = V::mul(x, x);
  const F y = V::mul(V::mul(V::set1(kGeluK), x), V::fmadd(V::set1(kGeluC), x2, V::set1(1)));
  const F e = V::exp(V::mul(V::set1(-2.0f), y));
  return {x, V::div(V::set1(1), V::add(V::set1(1), e)), e, x2};
}
// x s
inline F gelu_value(const GeluParts& g) {
  return V::mul(g.x, g.s);
}
// s + 2 x y' e s^2, y' = k (1 + 3 c x^2). e is capped where exp overflowed (s = 0 there), so
// that e s^2 is 0 and not inf * 0.
inline F gelu_slope(const GeluParts& g) {
  const F dy = V::fmadd(V::set1(3 * kGeluC * kGeluK), g.x2, V::set1(kGeluK));
  const F es2 = V::mul(V::mul(V::min(g.e, V::set1(0x1p60f)), g.s), g.s);
  // 2 x e s^2 first: where s = 1 it is 0, and 2 x y' alone may overflow.
  return V::fmadd(V::mul(V::mul(V::set1(2), g.x), es2), dy, g.s);
}

void k_tanh(const float* x, float* y, int64_t n) {
  map<1, 1>(n, {x}, {y}, [](const F* a, F* r) { r[0] = V::tanh(a[0]); });
}
void k_exp(const float* x, float* y, int64_t n) {
  map<1, 1>(n, {x}, {y}, [](const F* a, F* r) { r[0] = V::exp(a[0]); });
}
void k_gelu(const float* x, float* y, int64_t n) {
  map<1, 1>(n, {x}, {y}, [](const F* a, F* r) { r[0] = gelu_value(gelu_parts(a[0])); });
}
void k_gelu_backward(const float* dy, const float* x, float* dx, int64_t n) {
  map<2, 1>(n, {dy, x}, {dx},
            [](const F* a, F* r) { r[0] = V::mul(a[0], gelu_slope(gelu_parts(a[1]))); });
}
void k_gated_gelu(const float* gate, const float* linear, float* out, int64_t n) {
  map<2, 1>(n, {gate, linear}, {out},
            [](const F* a, F* r) { r[0] = V::mul(gelu_value(gelu_parts(a[0])), a[1]); });
}
void k_gated_gelu_backward(const float* dout, const float* gate, const float* linear, float* dgate,
                           float* dlinear, int64_t n) {
  map<3, 2>(n, {dout, gate, linear}, {dgate, dlinear}, [](const F* a, F* r) {
    const GeluParts g = gelu_parts(a[1]);
    r[0] = V::mul(V::mul(a[0], a[2]), gelu_slope(g));
    r[1] = V::mul(a[0], gelu_value(g));
  });
}
void k_axpy(float alpha, const float* x, float* y, int64_t n) {
  const F va = V::set1(alpha);
  map<2, 1>(n, {x, y}, {y}, [&](const F* a, F* r) { r[0] = V::fmadd(va, a[0], a[1]); });
}
void k_fill(float* x, float value, int64_t n) {
  const F v = V::set1(value);
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(x + i, v);
  for (; i < n; ++i) x[i] = value;
}

// ---- reductions ------------------------------------------------------------------------------
double k_sum(const float* x, int64_t n) {
  D acc = V::zero_d();
  scan<1>(n, {x}, [&](const F* a, int) { V::add_d(acc, a[0]); });
  return V::hsum_d(acc);
}
double k_sum_squares(const float* x, int64_t n) {
  D acc = V::zero_d();
  scan<1>(n, {x}, [&](const F* a, int) { V::add_sq_d(acc, a[0]); });
  return V::hsum_d(acc);
}

// ---- softmax ---------------------------------------------------------------------------------
float k_max(const float* x, int64_t n) {
  F m = V::set1(x[0]);
  int64_t i = 0;
  for (; i + L <= n; i += L) m = V::max(m, V::load(x + i));
  alignas(64) float buf[L];
  for (int k = 0; k < L; ++k) buf[k] = x[0];
  if (i < n) {
    std::memcpy(buf, x + i, size_t(n - i) * sizeof(float));
    m = V::max(m, V::load(buf));
  }
  return V::hmax(m);
}
double k_sum_exp(const float* x, float shift, int64_t n) {
  const F s = V::set1(shift);
  D acc = V::zero_d();
  scan<1>(n, {x},
          [&](const F* a, int valid) { V::add_d(acc, masked(V::exp(V::sub(a[0], s)), valid)); });
  return V::hsum_d(acc);
}
void k_scaled_exp(const float* x, float shift, float k, float* y, int64_t n) {
  const F s = V::set1(shift), vk = V::set1(k);
  map<1, 1>(n, {x}, {y}, [&](const F* a, F* r) { r[0] = V::mul(vk, V::exp(V::sub(a[0], s))); });
}
void k_softmax_row(float* x, int64_t n) {
  const F mx = V::set1(k_max(x, n));
  D acc = V::zero_d();
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const F e = V::exp(V::sub(V::load(x + i), mx));
    V::store(x + i, e);
    V::add_d(acc, e);
  }
  if (i < n) {
    alignas(64) float buf[L] = {};
    std::memcpy(buf, x + i, size_t(n - i) * sizeof(float));
    const F e = masked(V::exp(V::sub(V::load(buf), mx)), int(n - i));
    V::store(buf, e);
    std::memcpy(x + i, buf, size_t(n - i) * sizeof(float));
    V::add_d(acc, e);
  }
  const F inv = V::set1(static_cast<float>(1.0 / V::hsum_d(acc)));
  map<1, 1>(n, {x}, {x}, [&](const F* a, F* r) { r[0] = V::mul(a[0], inv); });
}
void k_softmax_row_backward(const float* y, const float* dy, float* dx, int64_t n) {
  D acc = V::zero_d();
  scan<2>(n, {y, dy}, [&](const F* a, int) { V::add_prod_d(acc, a[0], a[1]); });
  const F dot = V::set1(static_cast<float>(V::hsum_d(acc)));
  map<2, 1>(n, {y, dy}, {dx}, [&](const F* a, F* r) { r[0] = V::mul(a[0], V::sub(a[1], dot)); });
}

// ---- RMSNorm ---------------------------------------------------------------------------------
float k_rmsnorm_row(const float* x, const float* s, float eps, float* out, int64_t n) {
  D acc = V::zero_d();
  scan<1>(n, {x}, [&](const F* a, int) { V::add_sq_d(acc, a[0]); });
  const double mean = V::hsum_d(acc) / double(n);
  const float r = static_cast<float>(1.0 / __builtin_sqrt(mean + double(eps)));
  const F vr = V::set1(r);
  map<2, 1>(n, {x, s}, {out}, [&](const F* a, F* o) { o[0] = V::mul(V::mul(a[0], vr), a[1]); });
  return r;
}
void k_rmsnorm_row_backward(const float* g, const float* x, const float* s, float r, float* dx,
                            float* ds, int64_t n) {
  D acc = V::zero_d();
  scan<3>(n, {g, s, x}, [&](const F* a, int) { V::add_prod_d(acc, V::mul(a[0], a[1]), a[2]); });
  const double rd = r;
  const F k = V::set1(static_cast<float>(V::hsum_d(acc) * rd * rd * rd / double(n)));
  const F vr = V::set1(r);
  map<4, 2>(n, {g, s, x, ds}, {dx, ds}, [&](const F* a, F* o) {
    o[0] = V::fnmadd(a[2], k, V::mul(V::mul(vr, a[0]), a[1]));
    o[1] = V::fmadd(V::mul(a[0], a[2]), vr, a[3]);
  });
}

// ---- optimizers ------------------------------------------------------------------------------
void k_adamw(float* p, float* m, float* v, const float* grad, int64_t n,
             const math::AdamWCoeffs<float>& c) {
  const F gs = V::set1(c.grad_scale), b1 = V::set1(c.beta1), mb1 = V::set1(c.one_minus_beta1),
          b2 = V::set1(c.beta2), mb2 = V::set1(c.one_minus_beta2), eps = V::set1(c.eps),
          ib1 = V::set1(c.inv_bias1), isb2 = V::set1(c.inv_sqrt_bias2), lr = V::set1(c.lr),
          wd = V::set1(c.weight_decay);
  map<4, 3>(n, {p, m, v, grad}, {p, m, v}, [&](const F* a, F* r) {
    const F g = V::mul(a[3], gs);
    const F mn = V::fmadd(b1, a[1], V::mul(mb1, g));
    const F vn = V::fmadd(b2, a[2], V::mul(V::mul(mb2, g), g));
    const F denom = V::fmadd(V::sqrt(vn), isb2, eps);
    const F step = V::fmadd(wd, a[0], V::div(V::mul(mn, ib1), denom));
    r[0] = V::fnmadd(lr, step, a[0]);
    r[1] = mn;
    r[2] = vn;
  });
}

void k_adafactor_sums(const float* grad, const float* p, int64_t n, float grad_scale, double* g2,
                      double* p2) {
  const F gs = V::set1(grad_scale);
  D ag = V::zero_d(), ap = V::zero_d();
  scan<2>(n, {grad, p}, [&](const F* a, int) {
    V::add_sq_d(ag, V::mul(a[0], gs));
    V::add_sq_d(ap, a[1]);
  });
  *g2 += V::hsum_d(ag);
  *p2 += V::hsum_d(ap);
}

void k_adafactor_add_squares(const float* grad, int64_t n, float grad_scale, double* acc) {
  const F gs = V::set1(grad_scale);
  int64_t i = 0;
  for (; i + L <= n; i += L) V::add_sq_to(acc + i, V::mul(V::load(grad + i), gs));
  if (i == n) return;
  // The same product and one rounding of the sum as the vector lanes.
  alignas(64) float buf[L] = {};
  std::memcpy(buf, grad + i, size_t(n - i) * sizeof(float));
  V::store(buf, V::mul(V::load(buf), gs));
  for (int64_t k = 0; i + k < n; ++k) acc[i + k] += double(buf[k]) * double(buf[k]);
}

void k_adafactor_v(const float* grad, const float* p, float* v, int64_t n, float grad_scale,
                   float beta2, float one_minus_beta2, float eps1, double* p2, double* y2) {
  const F gs = V::set1(grad_scale), b2 = V::set1(beta2), mb2 = V::set1(one_minus_beta2),
          e1 = V::set1(eps1);
  D ap = V::zero_d(), ay = V::zero_d();
  int64_t i = 0;
  auto step = [&](F g, F pv, F vv, int valid) {
    g = V::mul(g, gs);
    const F vn = V::fmadd(b2, vv, V::mul(mb2, V::fmadd(g, g, e1)));
    V::add_sq_d(ap, pv);
    V::add_sq_d(ay, masked(V::div(g, V::sqrt(vn)), valid));
    return vn;
  };
  for (; i + L <= n; i += L)
    V::store(v + i, step(V::load(grad + i), V::load(p + i), V::load(v + i), L));
  if (i < n) {
    const size_t bytes = size_t(n - i) * sizeof(float);
    alignas(64) float bg[L] = {}, bp[L] = {}, bv[L] = {};
    std::memcpy(bg, grad + i, bytes);
    std::memcpy(bp, p + i, bytes);
    std::memcpy(bv, v + i, bytes);
    V::store(bv, step(V::load(bg), V::load(bp), V::load(bv), int(n - i)));
    std::memcpy(v + i, bv, bytes);
  }
  *p2 += V::hsum_d(ap);
  *y2 += V::hsum_d(ay);
}

void k_adafactor_v_apply(float* p, const float* grad, const float* v, int64_t n, float grad_scale,
                         float size) {
  const F gs = V::set1(grad_scale), sz = V::set1(size);
  map<3, 1>(n, {p, grad, v}, {p}, [&](const F* a, F* r) {
    r[0] = V::fnmadd(sz, V::div(V::mul(a[1], gs), V::sqrt(a[2])), a[0]);
  });
}

inline F factored_y(F g, F col, F gs, F rfac) {
  return V::div(V::mul(g, gs), V::sqrt(V::mul(rfac, col)));
}

double k_adafactor_row_y2(const float* grad, const float* col, int64_t n, float grad_scale,
                          float rfac) {
  const F gs = V::set1(grad_scale), rf = V::set1(rfac);
  D acc = V::zero_d();
  scan<2>(n, {grad, col}, [&](const F* a, int valid) {
    V::add_sq_d(acc, masked(factored_y(a[0], a[1], gs, rf), valid));
  });
  return V::hsum_d(acc);
}

void k_adafactor_row_apply(float* p, const float* grad, const float* col, int64_t n,
                           float grad_scale, float rfac, float size) {
  const F gs = V::set1(grad_scale), rf = V::set1(rfac), sz = V::set1(size);
  map<3, 1>(n, {p, grad, col}, {p},
            [&](const F* a, F* r) { r[0] = V::fnmadd(sz, factored_y(a[1], a[2], gs, rf), a[0]); });
}

constexpr Kernels make_kernels(const char* name) {
  return Kernels{name,
                 L,
                 k_tanh,
                 k_exp,
                 k_gelu,
                 k_gelu_backward,
                 k_gated_gelu,
                 k_gated_gelu_backward,
                 k_axpy,
                 k_fill,
                 k_softmax_row,
                 k_softmax_row_backward,
                 k_max,
                 k_sum_exp,
                 k_scaled_exp,
                 k_rmsnorm_row,
                 k_rmsnorm_row_backward,
                 k_sum,
                 k_sum_squares,
                 k_adamw,
                 k_adafactor_sums,
                 k_adafactor_add_squares,
                 k_adafactor_v,
                 k_adafactor_v_apply,
                 k_adafactor_row_y2,
                 k_adafactor_row_apply};
}

}  // namespace
}  // namespace mowe::cpu::simd
