#include "runtime/op_checks.h"

namespace mowe {
namespace {

// op(x) for a [rows, cols] operand (rows of a batched operand are those of one group).
struct Operand {
  int64_t outer, inner;  // rows and columns of op(x)
};
Operand op_shape(const Tensor& x, bool trans, bool batched) {
  int64_t r = batched ? x.dim(-2) : x.rows();
  int64_t c = x.cols();
  return trans ? Operand{c, r} : Operand{r, c};
}

// math::relative_position_bucket divides by log(max_distance / max_exact), max_exact being
// num_buckets / 2 (num_buckets / 4 per direction when bidirectional), as in config validation.
void check_max_distance(const char* op, int64_t num_buckets, int max_distance) {
  MOWE_CHECK(num_buckets >= 4, "{}: {} position buckets are too few (at least 4)", op, num_buckets);
  MOWE_CHECK(max_distance > num_buckets / 2, "{}: max_distance {} must be > num_buckets / 2 ({})",
             op, max_distance, num_buckets / 2);
}

AttentionDims attention_dims(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& probs) {
  MOWE_CHECK(q.shape.ndim() == 4 && k.shape.ndim() == 4,
             "{}: q and k must be [B,T,H,D]; got {}, {}", op, q.str(), k.str());
  AttentionDims d{q.dim(0), q.dim(1), k.dim(1), q.dim(2), q.dim(3)};
  check_shape(op, "k", k, {d.b, d.s, d.h, d.d});
  check_shape(op, "v", v, {d.b, d.s, d.h, d.d});
  check_shape(op, "probs", probs, {d.b, d.h, d.t, d.s});
  for (const Tensor* x : {&k, &v, &probs}) check_dtype(op, "operand", *x, q.dtype);
  return d;
}

LossDims check_loss_args(const char* op, const Tensor& logits, const Tensor& targets,
                         const Tensor& weights, const Tensor& lse) {
  const int64_t n = logits.rows();
  check_dtype(op, "targets", targets, DType::I32);
  MOWE_CHECK(targets.numel() == n, "{}: {} targets for {} rows of logits", op, targets.numel(), n);
  check_shape(op, "weights", weights, {n});
  check_shape(op, "lse", lse, {n});
  check_dtype(op, "weights", weights, logits.dtype);
  check_dtype(op, "lse", lse, logits.dtype);
  return {n, logits.cols()};
}

}  // namespace

MatmulDims check_matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                        bool trans_b) {
  MOWE_CHECK(a.dtype == b.dtype && a.dtype == c.dtype, "matmul: dtypes differ: {}, {}, {}", a.str(),
             b.str(), c.str());
  const Operand oa = op_shape(a, trans_a, false), ob = op_shape(b, trans_b, false);
  MOWE_CHECK(oa.inner == ob.outer && c.rows() == oa.outer && c.cols() == ob.inner,
             "matmul: shapes do not chain: op(a) {}x{}, op(b) {}x{}, c {} (trans_a={}, "
             "trans_b={})",
             oa.outer, oa.inner, ob.outer, ob.inner, c.shape.str(), trans_a, trans_b);
  return {oa.outer, ob.inner, oa.inner};
}

BatchedMatmulDims check_batched_matmul(const Tensor& a, const Tensor& b, const Tensor& c,
                                       bool trans_a, bool trans_b) {
  MOWE_CHECK(a.shape.ndim() == 3 && b.shape.ndim() == 3 && c.shape.ndim() == 3 &&
                 a.dim(0) == b.dim(0) && a.dim(0) == c.dim(0),
             "batched_matmul: expects [G,M,K], [G,K,N], [G,M,N]; got {}, {}, {}", a.str(), b.str(),
             c.str());
  MOWE_CHECK(a.dtype == b.dtype && a.dtype == c.dtype, "batched_matmul: dtypes differ: {}, {}, {}",
             a.str(), b.str(), c.str());
  const Operand oa = op_shape(a, trans_a, true), ob = op_shape(b, trans_b, true);
  MOWE_CHECK(oa.inner == ob.outer && c.dim(1) == oa.outer && c.dim(2) == ob.inner,
             "batched_matmul: shapes do not chain: {}, {}, {} (trans_a={}, trans_b={})", a.str(),
             b.str(), c.str(), trans_a, trans_b);
  return {
      a.dim(0),           oa.outer, ob.inner, oa.inner, a.dim(1) * a.dim(2), b.dim(1) * b.dim(2),
      c.dim(1) * c.dim(2)};
}

void check_unary_backward(const char* op, const Tensor& dout, const Tensor& x, const Tensor& dx) {
  check_same_shape(op, dout, x);
  check_same_shape(op, x, dx);
}

void check_gated_gelu_forward(const Tensor& gate, const Tensor& linear, const Tensor& out) {
  check_same_shape("gated_gelu_forward", gate, linear);
  check_same_shape("gated_gelu_forward", gate, out);
}

void check_gated_gelu_backward(const Tensor& dout, const Tensor& gate, const Tensor& linear,
                               const Tensor& dgate, const Tensor& dlinear) {
  for (const Tensor* t : {&dout, &linear, &dgate, &dlinear})
    check_same_shape("gated_gelu_backward", gate, *t);
}

void check_dropout(const char* op, const Tensor& x, const Tensor& out, float rate) {
  check_same_shape(op, x, out);
  MOWE_CHECK(rate >= 0.0f && rate < 1.0f, "{}: dropout rate {} is outside [0, 1)", op, rate);
}

RowsDims check_rmsnorm_forward(const Tensor& x, const Tensor& scale, const Tensor& out,
                               const Tensor& rstd) {
  check_same_shape("rmsnorm_forward", x, out);
  const int64_t n = x.rows(), c = x.cols();
  check_shape("rmsnorm_forward", "scale", scale, {c});
  check_shape("rmsnorm_forward", "rstd", rstd, {n});
  return {n, c};
}

RowsDims check_rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& scale,
                                const Tensor& rstd, const Tensor& dx, const Tensor& dscale) {
  check_same_shape("rmsnorm_backward", dout, x);
  check_same_shape("rmsnorm_backward", x, dx);
  const int64_t n = x.rows(), c = x.cols();
  check_shape("rmsnorm_backward", "scale", scale, {c});
  check_shape("rmsnorm_backward", "dscale", dscale, {c});
  check_shape("rmsnorm_backward", "rstd", rstd, {n});
  return {n, c};
}

PositionBiasDims check_position_bias_forward(const Tensor& table, const Tensor& out,
                                             int max_distance) {
  MOWE_CHECK(table.shape.ndim() == 2 && out.shape.ndim() == 3 && out.dim(0) == table.dim(1) &&
                 out.dtype == table.dtype,
             "position_bias_forward: expects table [K,H] and out [H,T,S]; got {}, {}", table.str(),
             out.str());
  check_max_distance("position_bias_forward", table.dim(0), max_distance);
  return {table.dim(0), table.dim(1), out.dim(1), out.dim(2)};
}

PositionBiasDims check_position_bias_backward(const Tensor& dout, const Tensor& dtable,
                                              int max_distance) {
  MOWE_CHECK(dtable.shape.ndim() == 2 && dout.shape.ndim() == 3 && dout.dim(0) == dtable.dim(1) &&
                 dout.dtype == dtable.dtype,
             "position_bias_backward: expects dout [H,T,S] and dtable [K,H]; got {}, {}",
             dout.str(), dtable.str());
  check_max_distance("position_bias_backward", dtable.dim(0), max_distance);
  return {dtable.dim(0), dtable.dim(1), dout.dim(1), dout.dim(2)};
}

AttentionDims check_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Tensor& bias, const Tensor& key_valid,
                                      const Tensor& probs, const Tensor& out) {
  const AttentionDims d = attention_dims("attention_forward", q, k, v, probs);
  check_same_shape("attention_forward", q, out);
  if (!bias.empty()) check_shape("attention_forward", "bias", bias, {d.h, d.t, d.s});
  if (!key_valid.empty()) {
    check_shape("attention_forward", "key_valid", key_valid, {d.b, d.s});
    check_dtype("attention_forward", "key_valid", key_valid, DType::I32);
  }
  return d;
}

AttentionDims check_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const Tensor& probs, const Tensor& dq,
                                       const Tensor& dk, const Tensor& dv, const Tensor& dbias) {
  const AttentionDims d = attention_dims("attention_backward", q, k, v, probs);
  check_same_shape("attention_backward", q, dout);
  check_same_shape("attention_backward", q, dq);
  check_same_shape("attention_backward", k, dk);
  check_same_shape("attention_backward", v, dv);
  if (!dbias.empty()) check_shape("attention_backward", "dbias", dbias, {d.h, d.t, d.s});
  return d;
}

EmbeddingDims check_embedding_forward(const Tensor& table, const Tensor& ids, const Tensor& out) {
  const int64_t v = table.rows(), c = table.cols(), n = ids.numel();
  check_dtype("embedding_forward", "ids", ids, DType::I32);
  MOWE_CHECK(out.rows() == n && out.cols() == c && out.dtype == table.dtype,
             "embedding_forward: out {} does not match ids {} and table {}", out.str(), ids.str(),
             table.str());
  return {v, c, n};
}

EmbeddingDims check_embedding_backward(const Tensor& dout, const Tensor& ids,
                                       const Tensor& dtable) {
  const int64_t v = dtable.rows(), c = dtable.cols(), n = ids.numel();
  check_dtype("embedding_backward", "ids", ids, DType::I32);
  MOWE_CHECK(dout.rows() == n && dout.cols() == c && dout.dtype == dtable.dtype,
             "embedding_backward: dout {} does not match ids {} and dtable {}", dout.str(),
             ids.str(), dtable.str());
  return {v, c, n};
}

LossDims check_cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                     const Tensor& weights, const Tensor& losses,
                                     const Tensor& lse) {
  const LossDims d = check_loss_args("cross_entropy_forward", logits, targets, weights, lse);
  check_shape("cross_entropy_forward", "losses", losses, {d.n});
  return d;
}

LossDims check_cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                      const Tensor& weights, const Tensor& lse,
                                      const Tensor& dlogits) {
  const LossDims d = check_loss_args("cross_entropy_backward", logits, targets, weights, lse);
  check_same_shape("cross_entropy_backward", logits, dlogits);
  return d;
}

namespace {

ExpertGatherDims check_expert_gather(const char* op, const Tensor& x, const Tensor& w,
                                     const Tensor& expert, const Tensor& out, bool trans_w) {
  MOWE_CHECK(w.shape.ndim() == 3, "{}: weights must be [E,K,M]; got {}", op, w.str());
  const ExpertGatherDims d{x.rows(), w.dim(0), x.cols(), trans_w ? w.dim(1) : w.dim(2)};
  check_shape(op, "w", w, trans_w ? Shape{d.experts, d.m, d.k} : Shape{d.experts, d.k, d.m});
  check_shape(op, "out", out, {d.rows, d.m});
  check_shape(op, "expert", expert, {d.rows});
  check_dtype(op, "expert", expert, DType::I32);
  check_dtype(op, "w", w, x.dtype);
  check_dtype(op, "out", out, x.dtype);
  return d;
}

}  // namespace

ExpertGatherDims check_expert_gather_matmul(const Tensor& x, const Tensor& w, const Tensor& expert,
                                            const Tensor& out, bool trans_w, float beta) {
  const char* op = "expert_gather_matmul";
  MOWE_CHECK(beta == 0.0f || beta == 1.0f, "{}: beta must be 0 or 1, not {}", op, beta);
  return check_expert_gather(op, x, w, expert, out, trans_w);
}

ExpertGatherDims check_expert_gather_weight_grad(const Tensor& x, const Tensor& g,
                                                 const Tensor& expert, const Tensor& dw) {
  return check_expert_gather("expert_gather_weight_grad", x, dw, expert, g, false);
}

void check_reduction(const char* op, const Tensor& x) {
  MOWE_CHECK(!x.empty() || x.numel() == 0, "{}: {} has no data", op, x.str());
}

void check_accumulate_sum_squares(const Tensor& x, const Tensor& total) {
  const char* op = "accumulate_sum_squares";
  check_reduction(op, x);
  MOWE_CHECK(!total.empty() && total.dtype == DType::F64 && total.numel() == 1,
             "{}: total must be one f64, got {}", op, total.str());
  MOWE_CHECK(x.device == total.device, "{}: x is {} but total is {}", op, x.str(), total.str());
}

void check_adamw_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                        const AdamWStep& s) {
  const char* op = "adamw_update";
  for (const Tensor* t : {&grad, &m, &v}) check_same_shape(op, param, *t);
  MOWE_CHECK(s.step >= 1, "{}: step {} must be >= 1 (bias correction counts from 1)", op, s.step);
  MOWE_CHECK(0 <= s.beta1 && s.beta1 < 1 && 0 <= s.beta2 && s.beta2 < 1,
             "{}: beta1 {} and beta2 {} must be in [0, 1)", op, s.beta1, s.beta2);
  MOWE_CHECK(s.eps > 0 && s.lr >= 0 && s.weight_decay >= 0 && std::isfinite(s.grad_scale),
             "{}: need eps > 0, lr >= 0, weight_decay >= 0 and a finite grad_scale; got {}, {}, "
             "{}, {}",
             op, s.eps, s.lr, s.weight_decay, s.grad_scale);
}

AdafactorDims check_adafactor_update(const Tensor& param, const Tensor& grad, const Tensor& row,
                                     const Tensor& col, const Tensor& v, const AdafactorStep& s) {
  const char* op = "adafactor_update";
  check_same_shape(op, param, grad);
  const int nd = param.shape.ndim();
  AdafactorDims d{0, nd >= 2 ? param.dim(-2) : 1, nd >= 1 ? param.dim(-1) : 1, v.empty()};
  // A zero-size slice leaves batch 0 (nothing to do) instead of dividing by zero.
  d.batch = d.rows * d.cols == 0 ? 0 : param.numel() / (d.rows * d.cols);
  if (d.factored) {
    MOWE_CHECK(nd >= 2 && !row.empty() && !col.empty(),
               "{}: give v (unfactored) or row and col (factored, parameters of rank >= 2); got "
               "param {}, row {}, col {}",
               op, param.str(), row.str(), col.str());
    check_shape(op, "row", row, {d.batch, d.rows});
    check_shape(op, "col", col, {d.batch, d.cols});
    check_dtype(op, "row", row, param.dtype);
    check_dtype(op, "col", col, param.dtype);
  } else {
    MOWE_CHECK(row.empty() && col.empty(), "{}: v and row/col given together", op);
    check_same_shape(op, param, v);
  }
  MOWE_CHECK(s.step >= 1 && s.decay_rate > 0, "{}: need step >= 1 and decay_rate > 0; got {}, {}",
             op, s.step, s.decay_rate);
  MOWE_CHECK(s.lr >= 0 && s.clip_threshold >= 0 && s.eps1 >= 0 && s.eps2 >= 0 &&
                 std::isfinite(s.grad_scale),
             "{}: need lr, clip_threshold, eps1, eps2 >= 0 and a finite grad_scale; got {}, {}, "
             "{}, {}, {}",
             op, s.lr, s.clip_threshold, s.eps1, s.eps2, s.grad_scale);
  return d;
}

math::AdafactorCoeffs adafactor_coeffs(const AdafactorStep& s) {
  const double decay = std::pow(static_cast<double>(s.step), -s.decay_rate);  // 1 - beta2
  return {1.0 - decay,  decay,
          s.eps1,       s.eps2,
          s.lr,         s.clip_threshold,
          s.grad_scale, s.multiply_by_parameter_scale};
}

}  // namespace mowe
