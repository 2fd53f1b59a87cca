// f32 kernels over contiguous arrays for the CPU backend's element-wise work, written once
// (simd_kernels_impl.h) and compiled three times: AVX-512F (simd_kernels_avx512.cc, built with
// -mavx512f), AVX2+FMA (simd_kernels_avx2.cc, built with -mavx2 -mfma) and SSE2
// (simd_kernels_sse2.cc, the x86-64 baseline). One of these kernel sets is selected per process
// from the running CPU (kernels()), so one binary runs everywhere. tanh and exp are SLEEF's 1.0-ULP
// functions. See docs/cpu_kernels.md.
//
// Every kernel treats a partial last vector exactly as a full one (padded copies), so the value
// computed for an element never depends on where an array or a thread's range starts or ends.
// Sums are in double, lane by lane in a fixed pattern, then across lanes in a fixed order: the
// same data in the same array gives the same bits whatever thread runs it.
#pragma once

#include <cstdint>

#include "runtime/math.h"

namespace mowe::cpu::simd {

struct Kernels {
  const char* name;  // "avx512", "avx2" or "sse2"
  int lanes;         // f32 values per vector

  // y = f(x) element-wise; y may equal x.
  void (*tanh)(const float* x, float* y, int64_t n);
  void (*exp)(const float* x, float* y, int64_t n);
  void (*gelu)(const float* x, float* y, int64_t n);
  // dx = dy * gelu'(x)
  void (*gelu_backward)(const float* dy, const float* x, float* dx, int64_t n);
  // out = gelu(gate) * linear
  void (*gated_gelu)(const float* gate, const float* linear, float* out, int64_t n);
  // dgate = dout * linear * gelu'(gate); dlinear = dout * gelu(gate)
  void (*gated_gelu_backward)(const float* dout, const float* gate, const float* linear,
                              float* dgate, float* dlinear, int64_t n);
  // y += a * x
  void (*axpy)(float a, const float* x, float* y, int64_t n);
  void (*fill)(float* x, float value, int64_t n);

  // Softmax of one row in place (n >= 1), and its backward dx = y * (dy - <dy, y>); dx may
  // equal dy.
  void (*softmax_row)(float* x, int64_t n);
  void (*softmax_row_backward)(const float* y, const float* dy, float* dx, int64_t n);
  // max(x) over n >= 1 values, and sum of exp(x - shift) in double (the loss's logsumexp).
  float (*max)(const float* x, int64_t n);
  double (*sum_exp)(const float* x, float shift, int64_t n);
  // y = k * exp(x - shift) (the loss's gradient).
  void (*scaled_exp)(const float* x, float shift, float k, float* y, int64_t n);

  // RMSNorm of one row of n: returns r = (mean(x^2) + eps)^-1/2 (mean in double) and writes
  // out = x r s.
  float (*rmsnorm_row)(const float* x, const float* s, float eps, float* out, int64_t n);
  // Its backward for that row: dx = r g s - x r^3 / n <g s, x> (dot in double), ds += g x r.
  void (*rmsnorm_row_backward)(const float* g, const float* x, const float* s, float r, float* dx,
                               float* ds, int64_t n);

  // Sums in double.
  double (*sum)(const float* x, int64_t n);
  double (*sum_squares)(const float* x, int64_t n);

  // math::adamw_update on n elements.
  void (*adamw)(float* p, float* m, float* v, const float* grad, int64_t n,
                const math::AdamWCoeffs<float>& c);

  // Adafactor pieces (optimizer_ops.cc), g being grad * grad_scale in f32.
  // Adds sum(g^2) to *g2 and sum(p^2) to *p2.
  void (*adafactor_sums)(const float* grad, const float* p, int64_t n, float grad_scale, double* g2,
                         double* p2);
  // acc[j] += g_j^2: a row's contribution to the column statistics.
  void (*adafactor_add_squares)(const float* grad, int64_t n, float grad_scale, double* acc);
  // Unfactored: v = moment(v, g^2); adds sum(p^2) to *p2 (p before the step) and sum(y^2),
  // y = g / sqrt(v), to *y2.
  void (*adafactor_v)(const float* grad, const float* p, float* v, int64_t n, float grad_scale,
                      float beta2, float one_minus_beta2, float eps1, double* p2, double* y2);
  // p -= size * g / sqrt(v)
  void (*adafactor_v_apply)(float* p, const float* grad, const float* v, int64_t n,
                            float grad_scale, float size);
  // Factored row with rfac = row[r] / mean(row): sum of y^2, y = g / sqrt(rfac * col), and the
  // update p -= size * y.
  double (*adafactor_row_y2)(const float* grad, const float* col, int64_t n, float grad_scale,
                             float rfac);
  void (*adafactor_row_apply)(float* p, const float* grad, const float* col, int64_t n,
                              float grad_scale, float rfac, float size);
};

// The kernel set of this process, selected on the first call: the widest of AVX-512F, AVX2+FMA
// and SSE2 that the CPU and OS support, capped by the environment's MOWE_CPU_SIMD (avx512, avx2
// or sse2) when it is set.
const Kernels& kernels();
// Each set on its own (tests compare them; avx512_kernels() needs avx512_supported(),
// avx2_kernels() avx2_supported()).
const Kernels& sse2_kernels();
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
bool avx2_supported();
bool avx512_supported();

// Sums of fixed 2048-element chunks combine in index order, so sums do not depend on threads.
constexpr int64_t kSumChunk = 2048;

}  // namespace mowe::cpu::simd
