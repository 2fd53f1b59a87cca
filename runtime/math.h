// Element-wise math shared by the CPU ops and the CUDA kernels, so CPU tests cover the formulas
// the GPU runs. Everything here is a header-only __host__ __device__ function.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/hash.h"  // mix64, MOWE_HD

namespace mowe::math {

// GELU, tanh approximation, as T5.1.1 (gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename T>
MOWE_HD inline T gelu(T x) {
  const T k = T(0.7978845608028654);  // sqrt(2/pi)
  T inner = k * (x + T(0.044715) * x * x * x);
  return T(0.5) * x * (T(1) + tanh(inner));
}

template <typename T>
MOWE_HD inline T gelu_grad(T x) {
  const T k = T(0.7978845608028654);
  T x2 = x * x;
  T inner = k * (x + T(0.044715) * x2 * x);
  T t = tanh(inner);
  T dinner = k * (T(1) + T(3) * T(0.044715) * x2);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner;
}

// T5 relative position bucket (mesh_tensorflow / T5X _relative_position_bucket).
// relative_position = key_position - query_position. Bidirectional buckets use half the range
// for each sign; half of each range is exact, the rest is logarithmic up to max_distance.
MOWE_HD inline int relative_position_bucket(int relative_position, bool bidirectional,
                                            int num_buckets, int max_distance) {
  int bucket = 0;
  int n = -relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    if (n < 0) bucket += num_buckets;
    n = n < 0 ? -n : n;
  } else {
    n = n < 0 ? 0 : n;
  }
  int max_exact = num_buckets / 2;
  if (n < max_exact) return bucket + n;
  // Same float32 arithmetic as the reference implementations, then truncation toward zero.
  float v = logf(static_cast<float>(n) / static_cast<float>(max_exact)) /
            logf(static_cast<float>(max_distance) / static_cast<float>(max_exact)) *
            static_cast<float>(num_buckets - max_exact);
  int large = max_exact + static_cast<int>(v);
  if (large > num_buckets - 1) large = num_buckets - 1;
  return bucket + large;
}

// Counter-based random numbers: the value at (seed, index) needs no state, so dropout masks are
// recomputed in the backward pass and are identical on every device and thread split.
// Uniform in [0, 1) with 24 bits, the resolution of a float.
MOWE_HD inline float uniform01(uint64_t seed, uint64_t index) {
  uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ULL + mix64(index + 0x632be59bd9b4e019ULL));
  return static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
}

// Keep-scale of element `index`: 0 when dropped, 1/(1-rate) when kept.
template <typename T>
MOWE_HD inline T dropout_scale(uint64_t seed, uint64_t index, float rate) {
  if (rate <= 0.0f) return T(1);
  return uniform01(seed, index) < rate ? T(0) : T(1) / (T(1) - T(rate));
}

// ---- optimizers (runtime/cpu/optimizer_ops.cc, runtime/cuda/optimizer_ops.cu) ------------------
// Per-step constants are computed once on the host in double (op_checks.h), so that 1 - beta
// keeps its precision when beta is close to 1, then cast to the parameters' type.

template <typename T>
struct AdamWCoeffs {
  T lr, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, grad_scale;
  T inv_bias1;       // 1 / (1 - beta1^t)
  T inv_sqrt_bias2;  // 1 / sqrt(1 - beta2^t)
};

// AdamW with decoupled weight decay and bias correction, as PyTorch's AdamW:
// p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p), p being the value before the step.
template <typename T>
MOWE_HD inline void adamw_update(T& p, T& m, T& v, T grad, const AdamWCoeffs<T>& c) {
  const T g = grad * c.grad_scale;
  m = c.beta1 * m + c.one_minus_beta1 * g;
  v = c.beta2 * v + c.one_minus_beta2 * g * g;
  const T denom = sqrt(v) * c.inv_sqrt_bias2 + c.eps;
  p -= c.lr * (m * c.inv_bias1 / denom + c.weight_decay * p);
}

// Adafactor as T5X's (see docs/optimizers.md). Statistics of one slice cover its elements, its
// rows or its columns; `mean_g2` is the mean of g^2 over what the statistic covers.
struct AdafactorCoeffs {
  double beta2, one_minus_beta2;  // beta2 = 1 - t^-decay_rate: 0 at t = 1, so v starts at g^2
  double eps1, eps2, lr, clip_threshold, grad_scale;
  bool multiply_by_parameter_scale;
};

template <typename T>
MOWE_HD inline T adafactor_moment(T acc, T mean_g2, T beta2, T one_minus_beta2, T eps1) {
  return beta2 * acc + one_minus_beta2 * (mean_g2 + eps1);
}

// Normalised update of one element of a factored slice: V is approximated by the rank-1
// row[r] * col[c] / mean(row), so y = g / sqrt(row[r] / mean(row) * col[c]).
template <typename T>
MOWE_HD inline T adafactor_factored_update(T g, T row, T col, T inv_row_mean) {
  return g / sqrt(row * inv_row_mean * col);
}

// Step size of a slice from the mean squares of its parameters and of its normalised updates y:
// lr * max(eps2, RMS(param)) / max(1, RMS(y) / clip_threshold). clip_threshold 0 = no clipping.
MOWE_HD inline double adafactor_step_size(double param_ms, double y_ms, const AdafactorCoeffs& c) {
  double size = c.lr;
  if (c.multiply_by_parameter_scale) size *= fmax(c.eps2, sqrt(param_ms));
  if (c.clip_threshold > 0) size /= fmax(1.0, sqrt(y_ms) / c.clip_threshold);
  return size;
}

}  // namespace mowe::math
