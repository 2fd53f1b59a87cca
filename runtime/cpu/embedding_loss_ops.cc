// Embedding lookup and softmax cross-entropy (with z-loss) on the CPU.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/elementwise_grain.h"
#include "runtime/cpu/simd_kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {
namespace {

// Ids are read on the host here; the CUDA kernels assert the same range on the device.
void check_id_range(const char* op, const Tensor& ids, int64_t limit) {
  const int32_t* p = ids.ptr<int32_t>();
  for (int64_t i = 0, n = ids.numel(); i < n; ++i) {
    MOWE_CHECK(p[i] >= 0 && p[i] < limit, "{}: id {} at position {} is outside [0, {})", op, p[i],
               i, limit);
  }
}

}  // namespace

void CpuBackend::embedding_forward(const Context&, const Tensor& table, const Tensor& ids,
                                   const Tensor& out) {
  for (const Tensor* t : {&table, &ids, &out}) check_cpu("embedding_forward", *t);
  const EmbeddingDims d = check_embedding_forward(table, ids, out);
  check_id_range("embedding_forward", ids, d.vocab);
  const int64_t c = d.cols, n = d.n;
  visit_dtype(Device::CPU, "embedding_forward", table.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int32_t* pi = ids.ptr<int32_t>();
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(table.ptr<T>() + pi[i] * c, c, out.ptr<T>() + i * c);
  });
}

void CpuBackend::embedding_backward(const Context&, const Tensor& dout, const Tensor& ids,
                                    const Tensor& dtable) {
  for (const Tensor* t : {&dout, &ids, &dtable}) check_cpu("embedding_backward", *t);
  const EmbeddingDims d = check_embedding_backward(dout, ids, dtable);
  check_id_range("embedding_backward", ids, d.vocab);
  const int64_t c = d.cols, n = d.n;
  visit_dtype(Device::CPU, "embedding_backward", dtable.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int32_t* pi = ids.ptr<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      const T* src = dout.ptr<T>() + i * c;
      T* dst = dtable.ptr<T>() + pi[i] * c;
      for (int64_t j = 0; j < c; ++j) dst[j] += src[j];
    }
  });
}

void CpuBackend::cross_entropy_forward(const Context&, const Tensor& logits, const Tensor& targets,
                                       const Tensor& weights, double z_loss, const Tensor& losses,
                                       const Tensor& lse) {
  for (const Tensor* t : {&logits, &targets, &weights, &losses, &lse})
    check_cpu("cross_entropy_forward", *t);
  const LossDims d = check_cross_entropy_forward(logits, targets, weights, losses, lse);
  check_id_range("cross_entropy_forward", targets, d.v);
  visit_dtype(Device::CPU, "cross_entropy_forward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = d.n, v = d.v;
    parallel_for(n, rows_grain(v), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = logits.ptr<T>() + r * v;
        T l;
        if constexpr (std::is_same_v<T, float>) {
          // logsumexp with the sum in double: the loss itself.
          const simd::Kernels& k = simd::kernels();
          const float mx = k.max(row, v);
          l = static_cast<float>(double(mx) + std::log(k.sum_exp(row, mx, v)));
        } else {
          T mx = *std::max_element(row, row + v);
          T sum = 0;
          for (int64_t j = 0; j < v; ++j) sum += std::exp(row[j] - mx);
          l = mx + std::log(sum);
        }
        lse.ptr<T>()[r] = l;
        const T w = weights.ptr<T>()[r];
        const T target_logit = row[targets.ptr<int32_t>()[r]];
        losses.ptr<T>()[r] = w == T(0) ? T(0) : w * (l - target_logit + T(z_loss) * l * l);
      }
    });
  });
}

// d/dlogit_j of (lse - logit_t + z lse^2) = p_j (1 + 2 z lse) - [j == t].
void CpuBackend::cross_entropy_backward(const Context&, const Tensor& logits, const Tensor& targets,
                                        const Tensor& weights, double z_loss, const Tensor& lse,
                                        double loss_scale, const Tensor& dlogits) {
  for (const Tensor* t : {&logits, &targets, &weights, &lse, &dlogits})
    check_cpu("cross_entropy_backward", *t);
  const LossDims d = check_cross_entropy_backward(logits, targets, weights, lse, dlogits);
  check_id_range("cross_entropy_backward", targets, d.v);
  visit_dtype(Device::CPU, "cross_entropy_backward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = d.n, v = d.v;
    parallel_for(n, rows_grain(v), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = logits.ptr<T>() + r * v;
        T* drow = dlogits.ptr<T>() + r * v;
        const T g = T(loss_scale) * weights.ptr<T>()[r];
        if (g == T(0)) {
          std::fill_n(drow, v, T(0));
          continue;
        }
        const T l = lse.ptr<T>()[r];
        const T k = g * (T(1) + T(2) * T(z_loss) * l);
        if constexpr (std::is_same_v<T, float>) {
          simd::kernels().scaled_exp(row, l, k, drow, v);
        } else {
          for (int64_t j = 0; j < v; ++j) drow[j] = k * std::exp(row[j] - l);
        }
        drow[targets.ptr<int32_t>()[r]] -= g;
      }
    });
  });
}

}  // namespace mowe::cpu
