// The kernels of simd_kernels.h for AVX-512F: this file alone is compiled with -mavx512f
// (runtime/CMakeLists.txt) and is only selected after checking the CPU (kernels()). Sixteen lanes
// halve the instructions of the AVX2 set; on CPUs that run 512-bit operations as two 256-bit
// halves (AMD Zen 4) the gain is in the transcendental functions and the loop overhead.
#include <immintrin.h>
#include <sleef.h>

#include <cstdint>

namespace mowe::cpu::simd {
namespace {

struct V {
  using F = __m512;
  static constexpr int L = 16;
  struct D {
    __m512d lo, hi;  // floats 0-7 and 8-15 of each vector, widened
  };

  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F sqrt(F a) { return _mm512_sqrt_ps(a); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static F tanh(F a) { return Sleef_tanhf16_u10avx512f(a); }
  static F exp(F a) { return Sleef_expf16_u10avx512f(a); }
  static F keep_first(F v, int k) {
    return _mm512_maskz_mov_ps(static_cast<__mmask16>((1u << k) - 1u), v);
  }
  static float hmax(F v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 m8 = _mm256_max_ps(lo, hi);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }

  static D zero_d() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static __m512d lo(F v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
  static __m512d hi(F v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
  static void add_d(D& d, F v) {
    d.lo = _mm512_add_pd(d.lo, lo(v));
    d.hi = _mm512_add_pd(d.hi, hi(v));
  }
  // Products of two floats are exact in double, so the fused add rounds as a separate one would.
  static void add_sq_d(D& d, F v) {
    const __m512d l = lo(v), h = hi(v);
    d.lo = _mm512_fmadd_pd(l, l, d.lo);
    d.hi = _mm512_fmadd_pd(h, h, d.hi);
  }
  static void add_prod_d(D& d, F a, F b) {
    d.lo = _mm512_fmadd_pd(lo(a), lo(b), d.lo);
    d.hi = _mm512_fmadd_pd(hi(a), hi(b), d.hi);
  }
  static void add_sq_to(double* acc, F v) {
    const __m512d l = lo(v), h = hi(v);
    _mm512_storeu_pd(acc, _mm512_fmadd_pd(l, l, _mm512_loadu_pd(acc)));
    _mm512_storeu_pd(acc + 8, _mm512_fmadd_pd(h, h, _mm512_loadu_pd(acc + 8)));
  }
  static double hsum_d(const D& d) {
    alignas(64) double l[8], h[8];
    _mm512_store_pd(l, d.lo);
    _mm512_store_pd(h, d.hi);
    return (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) +
           (((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7])));
  }
};

}  // namespace
}  // namespace mowe::cpu::simd

#include "runtime/cpu/simd_kernels_impl.h"

namespace mowe::cpu::simd {
const Kernels& avx512_kernels() {
  static constexpr Kernels k = make_kernels("avx512");
  return k;
}
}  // namespace mowe::cpu::simd
