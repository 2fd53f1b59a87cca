#include "model/mowe_layer.h"

#include "model/expert_form.h"
#include "model/t5_layers.h"
#include "runtime/backend.h"
#include "runtime/math.h"
#include "runtime/op_checks.h"

namespace mowe::model {

std::vector<ExpertShard> full_expert_shards(const RoutingTable& table) {
  std::vector<ExpertShard> shards;
  for (const BucketLayout& b : table.buckets())
    shards.push_back({b.num_experts(), 0, b.expert_d_ff, {}});
  return shards;
}

MoweLayer::MoweLayer(ParameterStore& store, const config::MoweConfig& config,
                     const RoutingTable& table, int64_t d_model, const std::string& block_name,
                     ExpertBank::Options options, std::vector<ExpertShard> shards)
    : name_(block_name + ".mowe"),
      bank_(store, config.share_expert_parameters() ? "mowe." : name_ + ".",
            shards.empty() ? full_expert_shards(table) : std::move(shards), d_model,
            bucket_activations(config), !config.freeze_experts(), config.share_expert_parameters(),
            options) {}

// Each token's (global example, position) as three small integers, exact in f32 and f64 (24
// bits each: example low and high bits, position), dispatched like the activations, so every
// row the experts compute knows its token wherever it came from.
void MoweLayer::derive_row_seeds(const Context& ctx, const Tensor& x, const TokenRouter& router,
                                 const ExpertDropout& dropout) {
  // The keys are written through host pointers; the expert bank's dropout is host-only too.
  if (ctx.device != Device::CPU)
    throw UserError(
        "model.mowe.expert_dropout_rate > 0 is not supported on a device (parallel.device CUDA or "
        "SIMULATED) yet: set it to 0, or train on the CPU");
  const int64_t n = x.rows(), r = router.expert_rows().num_rows;
  MOWE_CHECK(dropout.batch >= 1 && n % dropout.batch == 0,
             "{}: {} tokens are not {} examples of equal length", name_, n, dropout.batch);
  const int64_t length = n / dropout.batch;
  constexpr double kLow = 1 << 24;
  MOWE_CHECK(
      length < (int64_t{1} << 24) && dropout.first_example + dropout.batch < (int64_t{1} << 48),
      "{}: example index or length beyond the 48 + 24 bits expert dropout carries", name_);
  ArenaScope scope(*ctx.scratch);
  Tensor keys = ctx.scratch->alloc({n, 3}, x.dtype);
  Tensor keys_p = ctx.scratch->alloc({r, 3}, x.dtype);
  visit_dtype(ctx.device, "expert dropout keys", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    T* k = keys.ptr<T>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t example = dropout.first_example + i / length;
      k[3 * i] = static_cast<T>(example % (int64_t{1} << 24));
      k[3 * i + 1] = static_cast<T>(example >> 24);
      k[3 * i + 2] = static_cast<T>(i % length);
    }
  });
  router.dispatch(ctx, keys, keys_p);  // collective across ranks, like the activations
  row_seeds_.resize(static_cast<size_t>(r));
  visit_dtype(ctx.device, "expert dropout keys", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* k = keys_p.ptr<T>();
    for (int64_t i = 0; i < r; ++i) {
      const auto example = static_cast<int64_t>(static_cast<double>(k[3 * i]) +
                                                static_cast<double>(k[3 * i + 1]) * kLow);
      const auto position = static_cast<uint64_t>(k[3 * i + 2]);
      row_seeds_[i] = mix64(dropout_example_seed(dropout.step_seed, dropout.site, example) ^
                            mix64(position + 1));
    }
  });
}

Tensor MoweLayer::forward(const Context& ctx, const Tensor& x, const TokenRouter& router,
                          Arena& acts, const ExpertDropout& dropout) {
  MOWE_CHECK(ctx.scratch != nullptr && ctx.scratch != &acts,
             "{}: needs ctx.scratch, distinct from the activation arena", name_);
  check_shape(name_.c_str(), "x", x, {router.num_tokens(), bank_.d_model()});
  const int64_t r = router.expert_rows().num_rows, c = bank_.d_model();
  router_ = &router;
  xp_ = acts.alloc({r, c}, x.dtype);
  Tensor y = acts.alloc(x.shape, x.dtype);
  ArenaScope scope(*ctx.scratch);
  Tensor yp = ctx.scratch->alloc({r, c}, x.dtype);
  router.dispatch(ctx, x, xp_);
  ExpertBank::HiddenDropout hidden;
  if (dropout.rate > 0.0f) {
    derive_row_seeds(ctx, x, router, dropout);
    hidden = {dropout.rate, row_seeds_};
  }
  if (r > 0) bank_.forward(ctx, xp_, router.expert_rows(), acts, saved_, yp, hidden);
  router.combine(ctx, yp, y);  // collective across ranks: every rank calls it, rows or not
  return y;
}

void MoweLayer::backward(const Context& ctx, const Tensor& dy, const Tensor& dx) {
  MOWE_CHECK(router_ != nullptr, "{}: backward called without a forward", name_);
  MOWE_CHECK(ctx.scratch != nullptr, "{}: needs ctx.scratch", name_);
  const TokenRouter& router = *router_;
  const Shape shape{router.num_tokens(), bank_.d_model()};
  check_shape(name_.c_str(), "dy", dy, shape);
  check_shape(name_.c_str(), "dx", dx, shape);
  const int64_t r = router.expert_rows().num_rows;
  ArenaScope scope(*ctx.scratch);
  Tensor dyp = ctx.scratch->alloc({r, bank_.d_model()}, dy.dtype);
  Tensor dxp = ctx.scratch->alloc({r, bank_.d_model()}, dy.dtype);
  // The transposes of combine and dispatch are dispatch and combine.
  router.dispatch(ctx, dy, dyp);
  if (r > 0) bank_.backward(ctx, dyp, xp_, router.expert_rows(), saved_, dxp);
  router.combine(ctx, dxp, dx);
  router_ = nullptr;
  xp_ = Tensor();
}

}  // namespace mowe::model
