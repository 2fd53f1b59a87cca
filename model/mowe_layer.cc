#include "model/mowe_layer.h"

#include "model/expert_form.h"
#include "runtime/backend.h"

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

Tensor MoweLayer::forward(const Context& ctx, const Tensor& x, const TokenRouter& router,
                          Arena& acts) {
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
  if (r > 0) bank_.forward(ctx, xp_, router.expert_rows(), acts, saved_, yp);
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
