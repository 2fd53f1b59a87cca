// T5 relative position bias and multi-head attention on the CPU. Heads are strided views into
// [B,T,H,D] tensors (row stride H*D), so no transposes are materialised.
#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/elementwise_grain.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/simd_kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/math.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {

void CpuBackend::position_bias_forward(const Context&, const Tensor& table, const Tensor& out,
                                       bool bidirectional, int max_distance) {
  for (const Tensor* t : {&table, &out}) check_cpu("position_bias_forward", *t);
  const PositionBiasDims d = check_position_bias_forward(table, out, max_distance);
  visit_dtype(Device::CPU, "position_bias_forward", table.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* tab = table.ptr<T>();
    T* po = out.ptr<T>();
    for (int64_t i = 0; i < d.t; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        int bucket = math::relative_position_bucket(static_cast<int>(j - i), bidirectional,
                                                    static_cast<int>(d.buckets), max_distance);
        for (int64_t h = 0; h < d.heads; ++h)
          po[(h * d.t + i) * d.s + j] = tab[bucket * d.heads + h];
      }
    }
  });
}

void CpuBackend::position_bias_backward(const Context&, const Tensor& dout, const Tensor& dtable,
                                        bool bidirectional, int max_distance) {
  for (const Tensor* t : {&dout, &dtable}) check_cpu("position_bias_backward", *t);
  const PositionBiasDims d = check_position_bias_backward(dout, dtable, max_distance);
  visit_dtype(Device::CPU, "position_bias_backward", dtable.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* pd = dout.ptr<T>();
    T* tab = dtable.ptr<T>();
    for (int64_t i = 0; i < d.t; ++i) {
      for (int64_t j = 0; j < d.s; ++j) {
        int bucket = math::relative_position_bucket(static_cast<int>(j - i), bidirectional,
                                                    static_cast<int>(d.buckets), max_distance);
        for (int64_t h = 0; h < d.heads; ++h)
          tab[bucket * d.heads + h] += pd[(h * d.t + i) * d.s + j];
      }
    }
  });
}

namespace {

// y += x over n values (the f32 vector kernel's fused 1 * x + y rounds once, as y + x does).
template <typename T>
void add_row(const T* x, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    simd::kernels().axpy(1.0f, x, y, n);
  } else {
    for (int64_t j = 0; j < n; ++j) y[j] += x[j];
  }
}

// dst[j] = src[j] * keep-scale of probs element first + j (AttentionDropout).
template <typename T>
void apply_dropout_row(const AttentionDropout& dropout, int64_t first, const T* src, T* dst,
                       int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    dst[j] = src[j] *
             math::dropout_scale<T>(dropout.seed, static_cast<uint64_t>(first + j), dropout.rate);
}

}  // namespace

void CpuBackend::attention_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& bias, const Tensor& key_valid,
                                   const AttentionArgs& args, const Tensor& probs,
                                   const Tensor& out) {
  for (const Tensor* x : {&q, &k, &v, &bias, &key_valid, &probs, &out})
    check_cpu("attention_forward", *x);
  const AttentionDims d = check_attention_forward(q, k, v, bias, key_valid, probs, out);
  check_dropout("attention_forward", probs, probs, args.dropout.rate);
  const int64_t hd = d.h * d.d;
  const bool drop = args.dropout.rate > 0.0f;
  MOWE_CHECK(!drop || ctx.scratch != nullptr,
             "attention_forward with dropout needs a scratch arena in the context");
  std::optional<ArenaScope> scope;
  Tensor dropped;  // [T,S]: the dropped-out probabilities of one (b, h)
  if (drop) {
    scope.emplace(*ctx.scratch);
    dropped = ctx.scratch->alloc({d.t, d.s}, q.dtype);
  }
  visit_dtype(Device::CPU, "attention_forward", q.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T mask = static_cast<T>(args.mask_value);
    // Masks as additive rows, so each score row takes whole-row vector adds: `masks` holds the
    // key mask of the current example (0 or the mask value per key) and then S mask values,
    // whose tail is added to the keys after the query's position under a causal mask.
    // Kept per thread and grown once: steady-state steps allocate nothing.
    thread_local std::vector<T> masks;
    if (masks.size() < size_t(2 * d.s)) masks.resize(size_t(2 * d.s));
    T* key_mask = masks.data();
    T* causal_mask = masks.data() + d.s;
    std::fill_n(causal_mask, d.s, mask);
    for (int64_t b = 0; b < d.b; ++b) {
      if (!key_valid.empty()) {
        const int32_t* valid = key_valid.ptr<int32_t>() + b * d.s;
        for (int64_t j = 0; j < d.s; ++j) key_mask[j] = valid[j] == 0 ? mask : T(0);
      }
      for (int64_t h = 0; h < d.h; ++h) {
        const T* qbh = q.ptr<T>() + b * d.t * hd + h * d.d;
        const T* kbh = k.ptr<T>() + b * d.s * hd + h * d.d;
        const T* vbh = v.ptr<T>() + b * d.s * hd + h * d.d;
        T* p = probs.ptr<T>() + (b * d.h + h) * d.t * d.s;
        gemm(false, true, d.t, d.s, d.d, T(1), qbh, hd, kbh, hd, T(0), p, d.s);
        // Rows on the pool between the two products (BLAS and the pool take turns).
        parallel_for(d.t, rows_grain(d.s), [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            T* row = p + i * d.s;
            if (!bias.empty()) add_row(bias.ptr<T>() + (h * d.t + i) * d.s, row, d.s);
            if (!key_valid.empty()) add_row(key_mask, row, d.s);
            if (args.causal && i + 1 < d.s) add_row(causal_mask, row + i + 1, d.s - i - 1);
            if (d.s > 0) softmax_row(row, d.s);
            if (drop)
              apply_dropout_row(args.dropout, ((b * d.h + h) * d.t + i) * d.s, row,
                                dropped.ptr<T>() + i * d.s, d.s);
          }
        });
        gemm(false, false, d.t, d.d, d.s, T(1), drop ? dropped.ptr<T>() : p, d.s, vbh, hd, T(0),
             out.ptr<T>() + b * d.t * hd + h * d.d, hd);
      }
    }
  });
}

// Per (b, h) with P = probs and M the dropout mask's keep-scales (1 without dropout):
// dPm = dO V^T, dP = M * dPm, dS = softmax'(P) dP, dQ = dS K, dK = dS^T Q, dV = (M * P)^T dO,
// dbias[h] += dS. Masks are constants, and P is ~0 where they apply.
void CpuBackend::attention_backward(const Context& ctx, const Tensor& dout, const Tensor& q,
                                    const Tensor& k, const Tensor& v, const Tensor& probs,
                                    const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                    const Tensor& dbias, const AttentionDropout& dropout) {
  for (const Tensor* x : {&dout, &q, &k, &v, &probs, &dq, &dk, &dv, &dbias})
    check_cpu("attention_backward", *x);
  const AttentionDims d = check_attention_backward(dout, q, k, v, probs, dq, dk, dv, dbias);
  check_dropout("attention_backward", probs, probs, dropout.rate);
  MOWE_CHECK(ctx.scratch != nullptr, "attention_backward needs a scratch arena in the context");
  ArenaScope scope(*ctx.scratch);
  Tensor ds = ctx.scratch->alloc({d.t, d.s}, q.dtype);
  const bool drop = dropout.rate > 0.0f;
  Tensor dropped = drop ? ctx.scratch->alloc({d.t, d.s}, q.dtype) : Tensor();  // M * P
  const int64_t hd = d.h * d.d;
  visit_dtype(Device::CPU, "attention_backward", q.dtype, [&](auto zero) {
    using T = decltype(zero);
    T* pds = ds.ptr<T>();
    for (int64_t b = 0; b < d.b; ++b) {
      for (int64_t h = 0; h < d.h; ++h) {
        const int64_t qo = b * d.t * hd + h * d.d, ko = b * d.s * hd + h * d.d;
        const T* p = probs.ptr<T>() + (b * d.h + h) * d.t * d.s;
        gemm(false, true, d.t, d.s, d.d, T(1), dout.ptr<T>() + qo, hd, v.ptr<T>() + ko, hd, T(0),
             pds, d.s);
        parallel_for(d.t, rows_grain(d.s, kGrainStreaming), [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            if (drop) {
              const int64_t first = ((b * d.h + h) * d.t + i) * d.s;
              apply_dropout_row(dropout, first, pds + i * d.s, pds + i * d.s, d.s);
              apply_dropout_row(dropout, first, p + i * d.s, dropped.ptr<T>() + i * d.s, d.s);
            }
            softmax_row_backward(p + i * d.s, pds + i * d.s, pds + i * d.s, d.s);
            if (!dbias.empty()) add_row(pds + i * d.s, dbias.ptr<T>() + (h * d.t + i) * d.s, d.s);
          }
        });
        gemm(false, false, d.t, d.d, d.s, T(1), pds, d.s, k.ptr<T>() + ko, hd, T(0),
             dq.ptr<T>() + qo, hd);
        gemm(true, false, d.s, d.d, d.t, T(1), pds, d.s, q.ptr<T>() + qo, hd, T(0),
             dk.ptr<T>() + ko, hd);
        gemm(true, false, d.s, d.d, d.t, T(1), drop ? dropped.ptr<T>() : p, d.s, dout.ptr<T>() + qo,
             hd, T(0), dv.ptr<T>() + ko, hd);
      }
    }
  });
}

}  // namespace mowe::cpu
