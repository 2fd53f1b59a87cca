#include "model/expert_bank.h"

#include <algorithm>
#include <cmath>
#include <span>

#include <fmt/format.h>

#include "runtime/backend.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/math.h"
#include "runtime/op_checks.h"

namespace mowe::model {
namespace {

// Expert e of a [E, K, M] weight tensor, as a [K, M] matrix.
Tensor expert_matrix(const Tensor& w, int64_t e) {
  return w.rows_slice(e, e + 1).reshape({w.dim(1), w.dim(2)});
}

// The groups of one bucket, with rows counted from the bucket's first row, and how they are
// computed (for_each_run).
struct BucketGroups {
  std::span<const ExpertGroup> groups;
  int64_t base = 0;      // the bucket's first permuted row
  Tensor row_expert;     // [R_b] i32: the expert of each row of the bucket
  int64_t min_rows = 1;  // ExpertBank::Options::gemm_min_rows

  // gather(begin, end) for runs of consecutive groups smaller than min_rows, split over the
  // thread pool by whole groups; then gemm(group, begin, end) for each bigger group, on the
  // calling thread, where OpenBLAS has its own threads (BLAS never runs inside the pool, so the
  // two never oversubscribe the cores). A group is always computed whole, by one thread, with the
  // same kernel, and each writes only its own rows and its own expert's gradient: the results do
  // not depend on the number of threads or on where a run is cut (gather computes each row, and
  // sums each expert's rows, in row order whatever the run).
  // `work_per_row` (multiply-adds of one row, K x M) sizes the pool's tasks.
  template <typename Gemm, typename Gather>
  void for_each_run(int64_t work_per_row, Gemm&& gemm, Gather&& gather) const {
    const int64_t n = static_cast<int64_t>(groups.size());
    const int64_t grain = std::max<int64_t>(1, kTaskWork / std::max<int64_t>(1, work_per_row));
    cpu::parallel_for(n, grain, [&](int64_t first, int64_t last) {
      int64_t run_begin = -1, run_end = -1;
      for (int64_t i = first; i < last; ++i) {
        const ExpertGroup& g = groups[i];
        if (g.rows() < min_rows) {
          if (run_begin < 0) run_begin = g.begin;
          run_end = g.end;
        } else if (run_begin >= 0) {
          gather(run_begin - base, run_end - base);
          run_begin = -1;
        }
      }
      if (run_begin >= 0) gather(run_begin - base, run_end - base);
    });
    for (const ExpertGroup& g : groups)
      if (g.rows() >= min_rows) gemm(g, g.begin - base, g.end - base);
  }

  // Multiply-adds per pool task, at least: a few tens of microseconds of gather work, so the
  // tasks' cost stays small next to it.
  static constexpr int64_t kTaskWork = int64_t{1} << 18;
};

// out[rows of e] = in[rows of e] @ op(w[e]) + beta * out, for every expert e of the bucket.
// in [R_b, K]; w [E, K, M] or [E, M, K] (trans_w); out [R_b, M].
void grouped_matmul(const Context& ctx, const BucketGroups& bg, const Tensor& in, const Tensor& w,
                    const Tensor& out, bool trans_w, float beta) {
  Backend& backend = backend_for(ctx.device);
  bg.for_each_run(
      in.cols() * out.cols(),
      [&](const ExpertGroup& g, int64_t begin, int64_t end) {
        backend.matmul(ctx, in.rows_slice(begin, end), expert_matrix(w, g.expert),
                       out.rows_slice(begin, end), false, trans_w, 1.0f, beta);
      },
      [&](int64_t begin, int64_t end) {
        backend.expert_gather_matmul(ctx, in.rows_slice(begin, end), w,
                                     bg.row_expert.rows_slice(begin, end),
                                     out.rows_slice(begin, end), trans_w, beta);
      });
}

// dw[e] += in[rows of e]^T grad[rows of e] for every expert e of the bucket.
// in [R_b, K]; grad [R_b, M]; dw [E, K, M].
void grouped_weight_grad(const Context& ctx, const BucketGroups& bg, const Tensor& in,
                         const Tensor& grad, const Tensor& dw) {
  Backend& backend = backend_for(ctx.device);
  bg.for_each_run(
      in.cols() * grad.cols(),
      [&](const ExpertGroup& g, int64_t begin, int64_t end) {
        backend.matmul(ctx, in.rows_slice(begin, end), grad.rows_slice(begin, end),
                       expert_matrix(dw, g.expert), true, false, 1.0f, 1.0f);
      },
      [&](int64_t begin, int64_t end) {
        backend.expert_gather_weight_grad(ctx, in.rows_slice(begin, end),
                                          grad.rows_slice(begin, end),
                                          bg.row_expert.rows_slice(begin, end), dw);
      });
}

// a [R_b, F] *= the keep-scales of the bucket's rows (ExpertBank::HiddenDropout); `seeds` [R_b].
// Each element's scale depends only on its row's seed and its column, so the result is the same
// for any split over the thread pool.
void apply_hidden_dropout(const Tensor& a, std::span<const uint64_t> seeds, float rate) {
  MOWE_CHECK(a.device == Device::CPU, "expert hidden dropout runs on the CPU backend only");
  MOWE_CHECK(static_cast<int64_t>(seeds.size()) == a.rows(),
             "expert hidden dropout: {} row seeds for {} rows", seeds.size(), a.rows());
  const int64_t f = a.cols();
  visit_dtype(Device::CPU, "expert hidden dropout", a.dtype, [&](auto zero) {
    using T = decltype(zero);
    T* pa = a.ptr<T>();
    cpu::parallel_for(a.rows(), std::max<int64_t>(1, 4096 / std::max<int64_t>(1, f)),
                      [&](int64_t r0, int64_t r1) {
                        for (int64_t r = r0; r < r1; ++r)
                          for (int64_t j = 0; j < f; ++j)
                            pa[r * f + j] *=
                                math::dropout_scale<T>(seeds[r], static_cast<uint64_t>(j), rate);
                      });
  });
}

// The row seeds of bucket b's rows.
std::span<const uint64_t> bucket_seeds(const ExpertBank::HiddenDropout& dropout,
                                       const ExpertRows& rows, int b) {
  const int64_t begin = rows.bucket_rows[b], end = rows.bucket_rows[b + 1];
  return dropout.row_seeds.subspan(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
}

BucketGroups bucket_groups(const ExpertRows& rows, int b, int64_t min_rows) {
  const int64_t begin = rows.bucket_rows[b], end = rows.bucket_rows[b + 1];
  return {rows.bucket_group_span(b), begin, rows.row_expert_tensor().rows_slice(begin, end),
          min_rows};
}

Parameter& add_or_attach(ParameterStore& store, const std::string& name, Shape shape, double stddev,
                         bool trainable, const RowMap& rows, bool attach_existing) {
  if (attach_existing && store.contains(name)) {
    Parameter& p = store.get(name);
    MOWE_CHECK(p.value.tensor().shape == shape && p.kind == ParamKind::Expert &&
                   p.trainable == trainable && p.rows == rows,
               "shared expert parameter '{}' exists as {} (trainable={}), but this MoWE layer "
               "needs {} (trainable={})",
               name, p.value.tensor().shape.str(), p.trainable, shape.str(), trainable);
    return p;
  }
  return store.add(name, shape, ParamKind::Expert, {Init::TruncatedNormal, stddev}, trainable,
                   rows);
}

}  // namespace

ExpertBank::ExpertBank(ParameterStore& store, const std::string& prefix,
                       std::vector<ExpertShard> buckets, int64_t d_model,
                       std::vector<config::Activation> activations, bool trainable,
                       bool attach_existing, Options options)
    : d_model_(d_model), trainable_(trainable), options_(options) {
  MOWE_CHECK(options.gemm_min_rows >= 1, "ExpertBank: gemm_min_rows must be >= 1, not {}",
             options.gemm_min_rows);
  MOWE_CHECK(activations.size() == buckets.size(),
             "ExpertBank: {} expert forms for {} buckets (one per model.mowe.buckets entry)",
             activations.size(), buckets.size());
  const int64_t c = d_model;
  for (size_t b = 0; b < buckets.size(); ++b) {
    const ExpertShard& s = buckets[b];
    const RowMap rows = s.experts.empty() ? RowMap(s.first_expert) : RowMap(s.experts);
    MOWE_CHECK(s.num_experts >= 1 && s.d_ff >= 1,
               "ExpertBank: bucket {} has {} experts of width {}", b, s.num_experts, s.d_ff);
    const bool gated = activations[b] == config::GATED_GELU;
    Bucket bucket{s, activations[b], {}, nullptr};
    const std::string base = fmt::format("{}bucket{}.", prefix, b);
    const double in_std = 1.0 / std::sqrt(static_cast<double>(c));
    const double out_std = 1.0 / std::sqrt(static_cast<double>(s.d_ff));
    for (const char* name : gated ? std::vector<const char*>{"wi_gate", "wi_linear"}
                                  : std::vector<const char*>{"wi"}) {
      bucket.wi.push_back(&add_or_attach(store, base + name, {s.num_experts, c, s.d_ff}, in_std,
                                         trainable, rows, attach_existing));
    }
    bucket.wo = &add_or_attach(store, base + "wo", {s.num_experts, s.d_ff, c}, out_std, trainable,
                               rows, attach_existing);
    buckets_.push_back(std::move(bucket));
  }
}

void ExpertBank::forward(const Context& ctx, const Tensor& xp, const ExpertRows& rows, Arena& acts,
                         Saved& saved, const Tensor& yp, HiddenDropout dropout) const {
  MOWE_CHECK(rows.num_buckets() == num_buckets(),
             "ExpertBank: the dispatch has {} buckets but the bank holds {}", rows.num_buckets(),
             num_buckets());
  check_shape("ExpertBank::forward", "xp", xp, {rows.num_rows, d_model_});
  check_shape("ExpertBank::forward", "yp", yp, {rows.num_rows, d_model_});
  MOWE_CHECK(
      dropout.rate <= 0.0f || static_cast<int64_t>(dropout.row_seeds.size()) == rows.num_rows,
      "ExpertBank::forward: hidden dropout needs one seed per row ({} for {} rows)",
      dropout.row_seeds.size(), rows.num_rows);
  saved.h.assign(num_buckets(), Tensor());
  saved.h_linear.assign(num_buckets(), Tensor());
  saved.dropout = dropout;
  for (int b = 0; b < num_buckets(); ++b) {
    const int64_t begin = rows.bucket_rows[b], end = rows.bucket_rows[b + 1];
    if (begin == end) continue;
    forward_bucket(ctx, b, xp.rows_slice(begin, end), rows, acts, saved, yp.rows_slice(begin, end));
  }
}

// xb, yb [R_b, C]; saves h (and h_linear) [R_b, F].
void ExpertBank::forward_bucket(const Context& ctx, int b, const Tensor& xb, const ExpertRows& rows,
                                Arena& acts, Saved& saved, const Tensor& yb) const {
  Backend& backend = backend_for(ctx.device);
  const Bucket& bk = buckets_[b];
  const BucketGroups bg = bucket_groups(rows, b, options_.gemm_min_rows);
  const Shape hidden{xb.dim(0), bk.shard.d_ff};
  ArenaScope scope(*ctx.scratch);
  saved.h[b] = acts.alloc(hidden, xb.dtype);
  grouped_matmul(ctx, bg, xb, bk.wi[0]->value, saved.h[b], false, 0.0f);
  Tensor a = ctx.scratch->alloc(hidden, xb.dtype);
  if (bk.wi.size() == 2) {
    saved.h_linear[b] = acts.alloc(hidden, xb.dtype);
    grouped_matmul(ctx, bg, xb, bk.wi[1]->value, saved.h_linear[b], false, 0.0f);
    backend.gated_gelu_forward(ctx, saved.h[b], saved.h_linear[b], a);
  } else {
    backend.gelu_forward(ctx, saved.h[b], a);
  }
  if (saved.dropout.rate > 0.0f)
    apply_hidden_dropout(a, bucket_seeds(saved.dropout, rows, b), saved.dropout.rate);
  grouped_matmul(ctx, bg, a, bk.wo->value, yb, false, 0.0f);
}

void ExpertBank::backward(const Context& ctx, const Tensor& dyp, const Tensor& xp,
                          const ExpertRows& rows, const Saved& saved, const Tensor& dxp) const {
  MOWE_CHECK(static_cast<int>(saved.h.size()) == num_buckets(),
             "ExpertBank::backward without a matching forward");
  check_shape("ExpertBank::backward", "dyp", dyp, {rows.num_rows, d_model_});
  check_shape("ExpertBank::backward", "dxp", dxp, {rows.num_rows, d_model_});
  for (int b = 0; b < num_buckets(); ++b) {
    const int64_t begin = rows.bucket_rows[b], end = rows.bucket_rows[b + 1];
    if (begin == end) continue;
    backward_bucket(ctx, b, dyp.rows_slice(begin, end), xp.rows_slice(begin, end), rows, saved,
                    dxp.rows_slice(begin, end));
  }
}

// dyb, xb, dxb [R_b, C]. The activation is recomputed from the saved pre-activations rather than
// stored: one element-wise pass instead of another [R_b, F] buffer per layer.
void ExpertBank::backward_bucket(const Context& ctx, int b, const Tensor& dyb, const Tensor& xb,
                                 const ExpertRows& rows, const Saved& saved,
                                 const Tensor& dxb) const {
  Backend& backend = backend_for(ctx.device);
  const Bucket& bk = buckets_[b];
  const BucketGroups bg = bucket_groups(rows, b, options_.gemm_min_rows);
  const bool gated = bk.wi.size() == 2;
  const Tensor& h = saved.h[b];
  const Tensor& hl = saved.h_linear[b];
  ArenaScope scope(*ctx.scratch);
  Arena& scratch = *ctx.scratch;
  const Shape hidden = h.shape;

  if (trainable_) {
    // The experts whose weight gradients this pass writes: the rest stay zero (TouchedRows).
    for (const ExpertGroup& g : bg.groups) {
      for (Parameter* w : bk.wi) w->touched.add(g.expert);
      bk.wo->touched.add(g.expert);
    }
  }
  const bool drop = saved.dropout.rate > 0.0f;
  const std::span<const uint64_t> seeds =
      drop ? bucket_seeds(saved.dropout, rows, b) : std::span<const uint64_t>();
  Tensor da = scratch.alloc(hidden, h.dtype);  // d(activation) = M * (dy wo^T), M the mask
  grouped_matmul(ctx, bg, dyb, bk.wo->value, da, true, 0.0f);
  if (drop) apply_hidden_dropout(da, seeds, saved.dropout.rate);
  if (trainable_) {
    Tensor a = scratch.alloc(hidden, h.dtype);  // the forward's M * act(h)
    if (gated) {
      backend.gated_gelu_forward(ctx, h, hl, a);
    } else {
      backend.gelu_forward(ctx, h, a);
    }
    if (drop) apply_hidden_dropout(a, seeds, saved.dropout.rate);
    grouped_weight_grad(ctx, bg, a, dyb, bk.wo->grad);
  }
  Tensor dh = scratch.alloc(hidden, h.dtype);
  Tensor dhl = gated ? scratch.alloc(hidden, h.dtype) : Tensor();
  if (gated) {
    backend.gated_gelu_backward(ctx, da, h, hl, dh, dhl);
  } else {
    backend.gelu_backward(ctx, da, h, dh);
  }
  grouped_matmul(ctx, bg, dh, bk.wi[0]->value, dxb, true, 0.0f);
  if (gated) grouped_matmul(ctx, bg, dhl, bk.wi[1]->value, dxb, true, 1.0f);
  if (trainable_) {
    grouped_weight_grad(ctx, bg, xb, dh, bk.wi[0]->grad);
    if (gated) grouped_weight_grad(ctx, bg, xb, dhl, bk.wi[1]->grad);
  }
}

}  // namespace mowe::model
