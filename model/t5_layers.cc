#include "model/t5_layers.h"

#include "runtime/math.h"

namespace mowe::model {

uint64_t dropout_example_seed(uint64_t step_seed, uint64_t site, int64_t example) {
  return mix64(step_seed ^ mix64(site * kFnv1aPrime + example));
}

Weight Weight::of(ParameterStore& store, const std::string& name) {
  Parameter& p = store.get(name);
  return {p.value.tensor(), p.trainable ? p.grad.tensor() : Tensor()};
}

namespace {

uint64_t example_seed(const StepContext& s, uint64_t site, int64_t example) {
  return dropout_example_seed(s.dropout_seed, site, example);
}

template <typename F>
void for_each_example(const Tensor& x, int64_t batch, F&& f) {
  const int64_t rows = x.dim(0) / batch;
  for (int64_t b = 0; b < batch; ++b) f(b, x.rows_slice(b * rows, (b + 1) * rows));
}

// Attention-probability dropout of a sub-layer whose output dropout is `site` uses site + 1 (the
// block layout in t5_model.cc leaves it free; the FFN's hidden dropout takes its own site + 1).
// f(first, end, dropout) over the batch: one call for all examples without dropout, else one
// call per example with that example's seed, so the mask depends only on (seed, step, site,
// global example) and never on which rank holds the example or how the batch is split.
template <typename F>
void for_each_attention_call(const StepContext& s, int64_t batch, uint64_t site, F&& f) {
  if (s.dropout_rate <= 0.0f) return f(0, batch, AttentionDropout{});
  for (int64_t b = 0; b < batch; ++b)
    f(b, b + 1, AttentionDropout{s.dropout_rate, example_seed(s, site + 1, s.first_example + b)});
}

}  // namespace

// The gradient before the sub-layer's output dropout, without touching dx (which must stay the
// residual's gradient). Without dropout it is dx itself.
Tensor dropout_copy_backward(const StepContext& s, Arena& scratch, const Tensor& dx, int64_t batch,
                             uint64_t site) {
  if (s.dropout_rate <= 0.0f) return dx;
  Tensor out = scratch.alloc_zeros(dx.shape, dx.dtype);
  s.backend->axpy(s.ctx, 1.0, dx, out);
  dropout_examples_backward(s, out, batch, site);
  return out;
}

void dropout_examples_forward(const StepContext& s, const Tensor& x, int64_t batch, uint64_t site) {
  if (s.dropout_rate <= 0.0f) return;
  for_each_example(x, batch, [&](int64_t b, const Tensor& xb) {
    s.backend->dropout_forward(s.ctx, xb, xb, s.dropout_rate,
                               example_seed(s, site, s.first_example + b));
  });
}

void dropout_examples_backward(const StepContext& s, const Tensor& dx, int64_t batch,
                               uint64_t site) {
  if (s.dropout_rate <= 0.0f) return;
  for_each_example(dx, batch, [&](int64_t b, const Tensor& db) {
    s.backend->dropout_backward(s.ctx, db, db, s.dropout_rate,
                                example_seed(s, site, s.first_example + b));
  });
}

Tensor norm_forward(const StepContext& s, const Weight& norm, const Tensor& x_in, double eps,
                    Tensor* rstd) {
  Tensor out = s.activations->alloc(x_in.shape, x_in.dtype);
  *rstd = s.activations->alloc({x_in.rows()}, x_in.dtype);
  s.backend->rmsnorm_forward(s.ctx, x_in, norm.value, out, *rstd, eps);
  return out;
}

void norm_backward(const StepContext& s, const Weight& norm, const Tensor& dnormed,
                   const Tensor& x_in, const Tensor& rstd, const Tensor& dx) {
  s.backend->rmsnorm_backward(s.ctx, dnormed, x_in, norm.value, rstd, dx, norm.grad);
}

Tensor linear_forward(const StepContext& s, const Tensor& x, const Weight& w) {
  Tensor y = s.activations->alloc({x.rows(), w.value.dim(1)}, x.dtype);
  s.backend->matmul(s.ctx, x, w.value, y, false, false);
  return y;
}

// ---- attention ---------------------------------------------------------------------------------

AttentionSublayer::AttentionSublayer(ParameterStore& store, const std::string& prefix,
                                     AttentionSpec spec)
    : spec_(spec) {
  const int64_t c = spec.d_model, hd = spec.num_heads * spec.d_kv;
  // T5X's attention: variance_scaling(1.0, fan_in, normal), q's divided by sqrt(D) (no
  // 1/sqrt(D) in the scores, it is folded into q).
  store.add(prefix + ".norm", {c}, ParamKind::Dense, {Init::Ones});
  store.add(prefix + ".q", {c, hd}, ParamKind::Dense,
            {Init::Normal, 1.0 / std::sqrt(double(c) * spec.d_kv)});
  store.add(prefix + ".k", {c, hd}, ParamKind::Dense, {Init::Normal, 1.0 / std::sqrt(double(c))});
  store.add(prefix + ".v", {c, hd}, ParamKind::Dense, {Init::Normal, 1.0 / std::sqrt(double(c))});
  store.add(prefix + ".o", {hd, c}, ParamKind::Dense, {Init::Normal, 1.0 / std::sqrt(double(hd))});
  norm_ = Weight::of(store, prefix + ".norm");
  q_ = Weight::of(store, prefix + ".q");
  k_ = Weight::of(store, prefix + ".k");
  v_ = Weight::of(store, prefix + ".v");
  o_ = Weight::of(store, prefix + ".o");
}

Tensor AttentionSublayer::forward(const StepContext& s, const Tensor& x_in, const Tensor& memory,
                                  const Tensor& bias, const Tensor& key_valid, int64_t batch,
                                  uint64_t site, Saved* saved) const {
  const int64_t h = spec_.num_heads, d = spec_.d_kv;
  const int64_t t = x_in.rows() / batch;
  Saved& sv = *saved;
  sv.x_in = x_in;
  sv.normed = norm_forward(s, norm_, x_in, spec_.eps, &sv.rstd);
  const Tensor& source = memory.empty() ? sv.normed : memory;
  const int64_t src_len = source.rows() / batch;
  sv.q = linear_forward(s, sv.normed, q_).reshape({batch, t, h, d});
  sv.k = linear_forward(s, source, k_).reshape({batch, src_len, h, d});
  sv.v = linear_forward(s, source, v_).reshape({batch, src_len, h, d});
  sv.probs = s.activations->alloc({batch, h, t, src_len}, x_in.dtype);
  sv.heads = s.activations->alloc({batch, t, h, d}, x_in.dtype);
  for_each_attention_call(s, batch, site, [&](int64_t b0, int64_t b1, AttentionDropout dropout) {
    s.backend->attention_forward(s.ctx, sv.q.rows_slice(b0, b1), sv.k.rows_slice(b0, b1),
                                 sv.v.rows_slice(b0, b1), bias,
                                 key_valid.empty() ? key_valid : key_valid.rows_slice(b0, b1),
                                 {.causal = spec_.causal, .dropout = dropout},
                                 sv.probs.rows_slice(b0, b1), sv.heads.rows_slice(b0, b1));
  });
  Tensor out = linear_forward(s, sv.heads.reshape({batch * t, h * d}), o_);
  dropout_examples_forward(s, out, batch, site);
  s.backend->axpy(s.ctx, 1.0, x_in, out);
  return out;
}

void AttentionSublayer::backward(const StepContext& s, const Saved& sv, const Tensor& dx,
                                 const Tensor& memory, const Tensor& dmemory, const Tensor& dbias,
                                 int64_t batch, uint64_t site) const {
  Arena& scratch = *s.ctx.scratch;
  ArenaScope scope(scratch);
  const int64_t n = dx.rows(), hd = spec_.num_heads * spec_.d_kv;
  Tensor dout = dropout_copy_backward(s, scratch, dx, batch, site);

  Tensor heads = sv.heads.reshape({n, hd});
  Tensor dheads = scratch.alloc_zeros({n, hd}, dx.dtype);
  matmul_backward(*s.backend, s.ctx, dout, heads, o_.value, dheads, o_.grad, false, false);

  Tensor dq = scratch.alloc(sv.q.shape, dx.dtype), dk = scratch.alloc(sv.k.shape, dx.dtype);
  Tensor dv = scratch.alloc(sv.v.shape, dx.dtype);
  const Tensor dheads4 = dheads.reshape(sv.q.shape);
  for_each_attention_call(s, batch, site, [&](int64_t b0, int64_t b1, AttentionDropout dropout) {
    s.backend->attention_backward(s.ctx, dheads4.rows_slice(b0, b1), sv.q.rows_slice(b0, b1),
                                  sv.k.rows_slice(b0, b1), sv.v.rows_slice(b0, b1),
                                  sv.probs.rows_slice(b0, b1), dq.rows_slice(b0, b1),
                                  dk.rows_slice(b0, b1), dv.rows_slice(b0, b1), dbias, dropout);
  });

  const int64_t src_rows = sv.k.dim(0) * sv.k.dim(1);
  Tensor dnormed = scratch.alloc_zeros(dx.shape, dx.dtype);
  const bool cross = !memory.empty();
  const Tensor& source = cross ? memory : sv.normed;
  const Tensor& dsource = cross ? dmemory : dnormed;
  matmul_backward(*s.backend, s.ctx, dq.reshape({n, hd}), sv.normed, q_.value, dnormed, q_.grad,
                  false, false);
  matmul_backward(*s.backend, s.ctx, dk.reshape({src_rows, hd}), source, k_.value, dsource, k_.grad,
                  false, false);
  matmul_backward(*s.backend, s.ctx, dv.reshape({src_rows, hd}), source, v_.value, dsource, v_.grad,
                  false, false);

  Tensor dx_norm = scratch.alloc(dx.shape, dx.dtype);
  norm_backward(s, norm_, dnormed, sv.x_in, sv.rstd, dx_norm);
  s.backend->axpy(s.ctx, 1.0, dx_norm, dx);
}

// ---- feed-forward ------------------------------------------------------------------------------

FfnSublayer::FfnSublayer(ParameterStore& store, const std::string& prefix, int64_t d_model,
                         int64_t d_ff, double eps)
    : d_ff_(d_ff), eps_(eps) {
  store.add(prefix + ".norm", {d_model}, ParamKind::Dense, {Init::Ones});
  // T5X's MlpBlock: variance_scaling(1.0, fan_in, truncated_normal).
  const double wi_std = 1.0 / std::sqrt(double(d_model)), wo_std = 1.0 / std::sqrt(double(d_ff));
  store.add(prefix + ".wi_0", {d_model, d_ff}, ParamKind::Dense, {Init::TruncatedNormal, wi_std});
  store.add(prefix + ".wi_1", {d_model, d_ff}, ParamKind::Dense, {Init::TruncatedNormal, wi_std});
  store.add(prefix + ".wo", {d_ff, d_model}, ParamKind::Dense, {Init::TruncatedNormal, wo_std});
  norm_ = Weight::of(store, prefix + ".norm");
  wi0_ = Weight::of(store, prefix + ".wi_0");
  wi1_ = Weight::of(store, prefix + ".wi_1");
  wo_ = Weight::of(store, prefix + ".wo");
}

// Dropout sites: `site` on the output, `site + 1` on the hidden activation (as T5).
Tensor FfnSublayer::forward(const StepContext& s, const Tensor& x_in, int64_t batch, uint64_t site,
                            Saved* saved) const {
  Saved& sv = *saved;
  sv.x_in = x_in;
  sv.normed = norm_forward(s, norm_, x_in, eps_, &sv.rstd);
  sv.gate = linear_forward(s, sv.normed, wi0_);
  sv.linear = linear_forward(s, sv.normed, wi1_);
  sv.hidden = s.activations->alloc(sv.gate.shape, x_in.dtype);
  s.backend->gated_gelu_forward(s.ctx, sv.gate, sv.linear, sv.hidden);
  dropout_examples_forward(s, sv.hidden, batch, site + 1);
  Tensor out = linear_forward(s, sv.hidden, wo_);
  dropout_examples_forward(s, out, batch, site);
  s.backend->axpy(s.ctx, 1.0, x_in, out);
  return out;
}

void FfnSublayer::backward(const StepContext& s, const Saved& sv, const Tensor& dx, int64_t batch,
                           uint64_t site) const {
  Arena& scratch = *s.ctx.scratch;
  ArenaScope scope(scratch);
  const int64_t n = dx.rows();
  Tensor dout = dropout_copy_backward(s, scratch, dx, batch, site);

  Tensor dhidden = scratch.alloc_zeros({n, d_ff_}, dx.dtype);
  matmul_backward(*s.backend, s.ctx, dout, sv.hidden, wo_.value, dhidden, wo_.grad, false, false);
  dropout_examples_backward(s, dhidden, batch, site + 1);
  Tensor dgate = scratch.alloc(dhidden.shape, dx.dtype);
  Tensor dlinear = scratch.alloc(dhidden.shape, dx.dtype);
  s.backend->gated_gelu_backward(s.ctx, dhidden, sv.gate, sv.linear, dgate, dlinear);

  Tensor dnormed = scratch.alloc_zeros(dx.shape, dx.dtype);
  matmul_backward(*s.backend, s.ctx, dgate, sv.normed, wi0_.value, dnormed, wi0_.grad, false,
                  false);
  matmul_backward(*s.backend, s.ctx, dlinear, sv.normed, wi1_.value, dnormed, wi1_.grad, false,
                  false);
  Tensor dx_norm = scratch.alloc(dx.shape, dx.dtype);
  norm_backward(s, norm_, dnormed, sv.x_in, sv.rstd, dx_norm);
  s.backend->axpy(s.ctx, 1.0, dx_norm, dx);
}

}  // namespace mowe::model
