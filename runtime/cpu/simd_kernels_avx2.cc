// The kernels of simd_kernels.h for AVX2+FMA: this file alone is compiled with -mavx2 -mfma
// (runtime/CMakeLists.txt) and is only selected after checking the CPU (kernels()).
#include <immintrin.h>
#include <sleef.h>

#include <cstdint>

namespace mowe::cpu::simd {
namespace {

struct V {
  using F = __m256;
  static constexpr int L = 8;
  struct D {
    __m256d lo, hi;  // floats 0-3 and 4-7 of each vector, widened
  };

  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F sqrt(F a) { return _mm256_sqrt_ps(a); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static F tanh(F a) { return Sleef_tanhf8_u10avx2(a); }
  static F exp(F a) { return Sleef_expf8_u10avx2(a); }
  static F keep_first(F v, int k) {
    alignas(32) static const int32_t kMask[2 * L] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                     0,  0,  0,  0,  0,  0,  0,  0};
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + L - k));
    return _mm256_and_ps(v, _mm256_castsi256_ps(m));
  }
  static float hmax(F v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }

  static D zero_d() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static __m256d lo(F v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
  static __m256d hi(F v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
  static void add_d(D& d, F v) {
    d.lo = _mm256_add_pd(d.lo, lo(v));
    d.hi = _mm256_add_pd(d.hi, hi(v));
  }
  // Products of two floats are exact in double, so the fused add rounds as a separate one would.
  static void add_sq_d(D& d, F v) {
    const __m256d l = lo(v), h = hi(v);
    d.lo = _mm256_fmadd_pd(l, l, d.lo);
    d.hi = _mm256_fmadd_pd(h, h, d.hi);
  }
  static void add_prod_d(D& d, F a, F b) {
    d.lo = _mm256_fmadd_pd(lo(a), lo(b), d.lo);
    d.hi = _mm256_fmadd_pd(hi(a), hi(b), d.hi);
  }
  static void add_sq_to(double* acc, F v) {
    const __m256d l = lo(v), h = hi(v);
    _mm256_storeu_pd(acc, _mm256_fmadd_pd(l, l, _mm256_loadu_pd(acc)));
    _mm256_storeu_pd(acc + 4, _mm256_fmadd_pd(h, h, _mm256_loadu_pd(acc + 4)));
  }
  static double hsum_d(const D& d) {
    alignas(32) double l[4], h[4];
    _mm256_store_pd(l, d.lo);
    _mm256_store_pd(h, d.hi);
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((h[0] + h[1]) + (h[2] + h[3]));
  }
};

}  // namespace
}  // namespace mowe::cpu::simd

#include "runtime/cpu/simd_kernels_impl.h"

namespace mowe::cpu::simd {
const Kernels& avx2_kernels() {
  static constexpr Kernels k = make_kernels("avx2");
  return k;
}
}  // namespace mowe::cpu::simd
