// T5 relative position bias and multi-head attention on CUDA: validation in
// runtime/op_checks.cc, shared with the CPU; per batch entry, the products over heads are one
// strided-batched GEMM each (the heads of q[b] start D apart, with row stride H*D), and the
// softmax rows are kernels from attention_ops.cu.
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {

void CudaBackend::position_bias_forward(const Context& ctx, const Tensor& table, const Tensor& out,
                                        bool bidirectional, int max_distance) {
  for (const Tensor* t : {&table, &out}) check_cuda("position_bias_forward", *t);
  const PositionBiasDims p = check_position_bias_forward(table, out, max_distance);
  const BiasDims d{p.buckets, p.heads, p.t, p.s, bidirectional, max_distance};
  visit_dtype(Device::CUDA, "position_bias_forward", table.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_position_bias_forward(table.ptr<T>(), out.ptr<T>(), d, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::position_bias_backward(const Context& ctx, const Tensor& dout,
                                         const Tensor& dtable, bool bidirectional,
                                         int max_distance) {
  for (const Tensor* t : {&dout, &dtable}) check_cuda("position_bias_backward", *t);
  const PositionBiasDims p = check_position_bias_backward(dout, dtable, max_distance);
  const BiasDims d{p.buckets, p.heads, p.t, p.s, bidirectional, max_distance};
  visit_dtype(Device::CUDA, "position_bias_backward", dtable.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_position_bias_backward(dout.ptr<T>(), dtable.ptr<T>(), d, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

namespace {

// Offsets of batch entry b: in [B,T,H,D] (queries), [B,S,H,D] (keys) and [B,H,T,S] (probs).
struct Offsets {
  int64_t q, k, p;
};
Offsets offsets(const AttentionDims& d, int64_t b) {
  return {b * d.t * d.h * d.d, b * d.s * d.h * d.d, b * d.h * d.t * d.s};
}

// Attention dropout has no CUDA kernel yet: refused rather than silently skipped.
void refuse_dropout(const char* op, const AttentionDropout& dropout) {
  MOWE_REQUIRE(dropout.rate <= 0.0f,
               "{}: attention dropout (model.dropout_rate = {}) is not supported on GPU; train "
               "with model.dropout_rate: 0 on the CUDA backend, or on the CPU backend",
               op, dropout.rate);
}

}  // namespace

void CudaBackend::attention_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& bias, const Tensor& key_valid,
                                    const AttentionArgs& args, const Tensor& probs,
                                    const Tensor& out) {
  for (const Tensor* x : {&q, &k, &v, &bias, &key_valid, &probs, &out})
    check_cuda("attention_forward", *x);
  const AttentionDims d = check_attention_forward(q, k, v, bias, key_valid, probs, out);
  refuse_dropout("attention_forward", args.dropout);
  const int64_t hd = d.h * d.d, ts = d.t * d.s;
  visit_dtype(Device::CUDA, "attention_forward", q.dtype, [&](auto zero) {
    using T = decltype(zero);
    cublasHandle_t handle = cublas(ctx);
    T *pq = q.ptr<T>(), *pk = k.ptr<T>(), *pv = v.ptr<T>(), *pp = probs.ptr<T>();
    for (int64_t b = 0; b < d.b; ++b) {  // scores[b,h] = q[b,:,h] k[b,:,h]^T
      const Offsets o = offsets(d, b);
      gemm(handle, false, true, d.t, d.s, d.d, T(1), pq + o.q, hd, d.d, pk + o.k, hd, d.d, T(0),
           pp + o.p, d.s, ts, d.h);
    }
    launch_attention_softmax(pp, optional_ptr<T>(bias), optional_ptr<int32_t>(key_valid),
                             {d.b, d.h, d.t, d.s}, args.causal, static_cast<T>(args.mask_value),
                             stream_of(ctx));
    CUDA_CHECK_LAST();
    for (int64_t b = 0; b < d.b; ++b) {  // out[b,:,h] = probs[b,h] v[b,:,h]
      const Offsets o = offsets(d, b);
      gemm(handle, false, false, d.t, d.d, d.s, T(1), pp + o.p, d.s, ts, pv + o.k, hd, d.d, T(0),
           out.ptr<T>() + o.q, hd, d.d, d.h);
    }
  });
}

// Per batch entry, over all heads at once, with P = probs: dP = dO V^T, dS = softmax'(P) dP,
// dQ = dS K, dK = dS^T Q, dV = P^T dO, dbias += dS. dS of one entry lives in scratch; reusing
// it for the next entry is safe because all work is ordered on one stream.
void CudaBackend::attention_backward(const Context& ctx, const Tensor& dout, const Tensor& q,
                                     const Tensor& k, const Tensor& v, const Tensor& probs,
                                     const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     const Tensor& dbias, const AttentionDropout& dropout) {
  for (const Tensor* x : {&dout, &q, &k, &v, &probs, &dq, &dk, &dv, &dbias})
    check_cuda("attention_backward", *x);
  const AttentionDims d = check_attention_backward(dout, q, k, v, probs, dq, dk, dv, dbias);
  refuse_dropout("attention_backward", dropout);
  Arena& scratch = cuda_scratch("attention_backward", ctx);
  ArenaScope scope(scratch);
  Tensor ds = scratch.alloc({d.h, d.t, d.s}, q.dtype);
  const int64_t hd = d.h * d.d, ts = d.t * d.s;
  visit_dtype(Device::CUDA, "attention_backward", q.dtype, [&](auto zero) {
    using T = decltype(zero);
    cublasHandle_t handle = cublas(ctx);
    T *pds = ds.ptr<T>(), *pp = probs.ptr<T>(), *pdo = dout.ptr<T>();
    for (int64_t b = 0; b < d.b; ++b) {
      const Offsets o = offsets(d, b);
      gemm(handle, false, true, d.t, d.s, d.d, T(1), pdo + o.q, hd, d.d, v.ptr<T>() + o.k, hd, d.d,
           T(0), pds, d.s, ts, d.h);
      launch_attention_softmax_backward(pp + o.p, pds, optional_ptr<T>(dbias), d.h * d.t, d.s,
                                        stream_of(ctx));
      CUDA_CHECK_LAST();
      gemm(handle, false, false, d.t, d.d, d.s, T(1), pds, d.s, ts, k.ptr<T>() + o.k, hd, d.d, T(0),
           dq.ptr<T>() + o.q, hd, d.d, d.h);
      gemm(handle, true, false, d.s, d.d, d.t, T(1), pds, d.s, ts, q.ptr<T>() + o.q, hd, d.d, T(0),
           dk.ptr<T>() + o.k, hd, d.d, d.h);
      gemm(handle, true, false, d.s, d.d, d.t, T(1), pp + o.p, d.s, ts, pdo + o.q, hd, d.d, T(0),
           dv.ptr<T>() + o.k, hd, d.d, d.h);
    }
  });
}

}  // namespace mowe::cuda
