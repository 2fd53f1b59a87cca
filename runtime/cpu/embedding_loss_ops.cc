// Embedding lookup and softmax cross-entropy (with z-loss) on the CPU.
#include <algorithm>
#include <cmath>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/gemm.h"

namespace mowe::cpu {
namespace {

void check_ids(const char* op, const Tensor& ids, int64_t limit) {
  check_dtype(op, "ids", ids, DType::I32);
  const int32_t* p = ids.ptr<int32_t>();
  for (int64_t i = 0, n = ids.numel(); i < n; ++i) {
    MOWE_CHECK(p[i] >= 0 && p[i] < limit, "{}: id {} at position {} is outside [0, {})", op, p[i],
               i, limit);
  }
}

}  // namespace

void CpuBackend::embedding_forward(const Context&, const Tensor& table, const Tensor& ids,
                                   const Tensor& out) {
  check_cpu("embedding_forward", table);
  const int64_t v = table.rows(), c = table.cols(), n = ids.numel();
  check_ids("embedding_forward", ids, v);
  MOWE_CHECK(out.rows() == n && out.cols() == c && out.dtype == table.dtype,
             "embedding_forward: out {} does not match ids {} and table {}", out.str(), ids.str(),
             table.str());
  dispatch_float("embedding_forward", table.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int32_t* pi = ids.ptr<int32_t>();
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(table.ptr<T>() + pi[i] * c, c, out.ptr<T>() + i * c);
  });
}

void CpuBackend::embedding_backward(const Context&, const Tensor& dout, const Tensor& ids,
                                    const Tensor& dtable) {
  check_cpu("embedding_backward", dtable);
  const int64_t v = dtable.rows(), c = dtable.cols(), n = ids.numel();
  check_ids("embedding_backward", ids, v);
  MOWE_CHECK(dout.rows() == n && dout.cols() == c && dout.dtype == dtable.dtype,
             "embedding_backward: dout {} does not match ids {} and dtable {}", dout.str(),
             ids.str(), dtable.str());
  dispatch_float("embedding_backward", dtable.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int32_t* pi = ids.ptr<int32_t>();
    for (int64_t i = 0; i < n; ++i) {
      const T* src = dout.ptr<T>() + i * c;
      T* dst = dtable.ptr<T>() + pi[i] * c;
      for (int64_t j = 0; j < c; ++j) dst[j] += src[j];
    }
  });
}

namespace {
void check_loss_args(const char* op, const Tensor& logits, const Tensor& targets,
                     const Tensor& weights, const Tensor& lse) {
  check_cpu(op, logits);
  const int64_t n = logits.rows();
  check_ids(op, targets, logits.cols());
  MOWE_CHECK(targets.numel() == n, "{}: {} targets for {} rows of logits", op, targets.numel(), n);
  check_shape(op, "weights", weights, {n});
  check_shape(op, "lse", lse, {n});
  check_dtype(op, "weights", weights, logits.dtype);
  check_dtype(op, "lse", lse, logits.dtype);
}
}  // namespace

void CpuBackend::cross_entropy_forward(const Context&, const Tensor& logits, const Tensor& targets,
                                       const Tensor& weights, double z_loss, const Tensor& losses,
                                       const Tensor& lse) {
  check_loss_args("cross_entropy_forward", logits, targets, weights, lse);
  check_shape("cross_entropy_forward", "losses", losses, {logits.rows()});
  dispatch_float("cross_entropy_forward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = logits.rows(), v = logits.cols();
    for (int64_t r = 0; r < n; ++r) {
      const T* row = logits.ptr<T>() + r * v;
      T mx = *std::max_element(row, row + v);
      T sum = 0;
      for (int64_t j = 0; j < v; ++j) sum += std::exp(row[j] - mx);
      const T l = mx + std::log(sum);
      lse.ptr<T>()[r] = l;
      const T w = weights.ptr<T>()[r];
      const T target_logit = row[targets.ptr<int32_t>()[r]];
      losses.ptr<T>()[r] = w == T(0) ? T(0) : w * (l - target_logit + T(z_loss) * l * l);
    }
  });
}

// d/dlogit_j of (lse - logit_t + z lse^2) = p_j (1 + 2 z lse) - [j == t].
void CpuBackend::cross_entropy_backward(const Context&, const Tensor& logits, const Tensor& targets,
                                        const Tensor& weights, double z_loss, const Tensor& lse,
                                        double loss_scale, const Tensor& dlogits) {
  check_loss_args("cross_entropy_backward", logits, targets, weights, lse);
  check_same_shape("cross_entropy_backward", logits, dlogits);
  dispatch_float("cross_entropy_backward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t n = logits.rows(), v = logits.cols();
    for (int64_t r = 0; r < n; ++r) {
      const T* row = logits.ptr<T>() + r * v;
      T* drow = dlogits.ptr<T>() + r * v;
      const T g = T(loss_scale) * weights.ptr<T>()[r];
      if (g == T(0)) {
        std::fill_n(drow, v, T(0));
        continue;
      }
      const T l = lse.ptr<T>()[r];
      const T k = g * (T(1) + T(2) * T(z_loss) * l);
      for (int64_t j = 0; j < v; ++j) drow[j] = k * std::exp(row[j] - l);
      drow[targets.ptr<int32_t>()[r]] -= g;
    }
  });
}

}  // namespace mowe::cpu
