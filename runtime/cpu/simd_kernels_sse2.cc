// The kernels of simd_kernels.h for SSE2, which every x86-64 CPU has: the fallback when AVX2 or
// FMA is missing. Without FMA, a*b+c rounds twice here.
#include <emmintrin.h>
#include <sleef.h>

#include <cstdint>

namespace mowe::cpu::simd {
namespace {

struct V {
  using F = __m128;
  static constexpr int L = 4;
  struct D {
    __m128d lo, hi;  // floats 0-1 and 2-3 of each vector, widened
  };

  static F load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, F v) { _mm_storeu_ps(p, v); }
  static F set1(float x) { return _mm_set1_ps(x); }
  static F add(F a, F b) { return _mm_add_ps(a, b); }
  static F sub(F a, F b) { return _mm_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm_mul_ps(a, b); }
  static F div(F a, F b) { return _mm_div_ps(a, b); }
  static F sqrt(F a) { return _mm_sqrt_ps(a); }
  static F min(F a, F b) { return _mm_min_ps(a, b); }
  static F max(F a, F b) { return _mm_max_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static F fnmadd(F a, F b, F c) { return _mm_sub_ps(c, _mm_mul_ps(a, b)); }
  static F tanh(F a) { return Sleef_tanhf4_u10sse2(a); }
  static F exp(F a) { return Sleef_expf4_u10sse2(a); }
  static F keep_first(F v, int k) {
    alignas(16) static const int32_t kMask[2 * L] = {-1, -1, -1, -1, 0, 0, 0, 0};
    const __m128i m = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kMask + L - k));
    return _mm_and_ps(v, _mm_castsi128_ps(m));
  }
  static float hmax(F v) {
    F m = _mm_max_ps(v, _mm_movehl_ps(v, v));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }

  static D zero_d() { return {_mm_setzero_pd(), _mm_setzero_pd()}; }
  static __m128d lo(F v) { return _mm_cvtps_pd(v); }
  static __m128d hi(F v) { return _mm_cvtps_pd(_mm_movehl_ps(v, v)); }
  static void add_d(D& d, F v) {
    d.lo = _mm_add_pd(d.lo, lo(v));
    d.hi = _mm_add_pd(d.hi, hi(v));
  }
  static void add_sq_d(D& d, F v) {
    const __m128d l = lo(v), h = hi(v);
    d.lo = _mm_add_pd(d.lo, _mm_mul_pd(l, l));
    d.hi = _mm_add_pd(d.hi, _mm_mul_pd(h, h));
  }
  static void add_prod_d(D& d, F a, F b) {
    d.lo = _mm_add_pd(d.lo, _mm_mul_pd(lo(a), lo(b)));
    d.hi = _mm_add_pd(d.hi, _mm_mul_pd(hi(a), hi(b)));
  }
  static void add_sq_to(double* acc, F v) {
    const __m128d l = lo(v), h = hi(v);
    _mm_storeu_pd(acc, _mm_add_pd(_mm_loadu_pd(acc), _mm_mul_pd(l, l)));
    _mm_storeu_pd(acc + 2, _mm_add_pd(_mm_loadu_pd(acc + 2), _mm_mul_pd(h, h)));
  }
  static double hsum_d(const D& d) {
    alignas(16) double l[2], h[2];
    _mm_store_pd(l, d.lo);
    _mm_store_pd(h, d.hi);
    return (l[0] + l[1]) + (h[0] + h[1]);
  }
};

}  // namespace
}  // namespace mowe::cpu::simd

#include "runtime/cpu/simd_kernels_impl.h"

namespace mowe::cpu::simd {
const Kernels& sse2_kernels() {
  static constexpr Kernels k = make_kernels("sse2");
  return k;
}
}  // namespace mowe::cpu::simd
