#include "model/mowe_layer.h"

#include "runtime/backend.h"

namespace mowe::model {

std::vector<ExpertShard> full_expert_shards(const RoutingTable& table) {
  std::vector<ExpertShard> shards;
  for (const BucketLayout& b : table.buckets())
    shards.push_back({b.num_experts(), 0, b.expert_d_ff});
  return shards;
}

MoweLayer::MoweLayer(ParameterStore& store, const config::MoweConfig& config,
                     const RoutingTable& table, int64_t d_model, const std::string& block_name,
                     ExpertBank::Options options)
    : name_(block_name + ".mowe"),
      bank_(store, config.share_expert_parameters() ? "mowe." : name_ + ".",
            full_expert_shards(table), d_model, config.expert_activation(),
            !config.freeze_experts(), config.share_expert_parameters(), options) {}

Tensor MoweLayer::forward(const Context& ctx, const Tensor& x, const Dispatch& dispatch,
                          Arena& acts) {
  MOWE_CHECK(ctx.scratch != nullptr && ctx.scratch != &acts,
             "{}: needs ctx.scratch, distinct from the activation arena", name_);
  check_shape(name_.c_str(), "x", x, {dispatch.num_tokens(), bank_.d_model()});
  Backend& backend = backend_for(ctx.device);
  const int64_t r = dispatch.num_routed(), c = bank_.d_model();
  dispatch_ = &dispatch;
  xp_ = acts.alloc({r, c}, x.dtype);
  Tensor y = acts.alloc(x.shape, x.dtype);
  backend.fill(ctx, y, 0.0);
  if (r == 0) return y;  // every token skipped: nothing to compute or save
  ArenaScope scope(*ctx.scratch);
  backend.embedding_forward(ctx, x, dispatch.order(), xp_);  // gather rows: xp[j] = x[order[j]]
  Tensor yp = ctx.scratch->alloc({r, c}, x.dtype);
  bank_.forward(ctx, xp_, dispatch.rows(), acts, saved_, yp);
  backend.embedding_backward(ctx, yp, dispatch.order(), y);  // scatter: y[order[j]] += yp[j]
  return y;
}

void MoweLayer::backward(const Context& ctx, const Tensor& dy, const Tensor& dx) {
  MOWE_CHECK(dispatch_ != nullptr, "{}: backward called without a forward", name_);
  MOWE_CHECK(ctx.scratch != nullptr, "{}: needs ctx.scratch", name_);
  const Dispatch& dispatch = *dispatch_;
  const Shape shape{dispatch.num_tokens(), bank_.d_model()};
  check_shape(name_.c_str(), "dy", dy, shape);
  check_shape(name_.c_str(), "dx", dx, shape);
  Backend& backend = backend_for(ctx.device);
  backend.fill(ctx, dx, 0.0);
  const int64_t r = dispatch.num_routed();
  if (r > 0) {
    ArenaScope scope(*ctx.scratch);
    Tensor dyp = ctx.scratch->alloc({r, bank_.d_model()}, dy.dtype);
    Tensor dxp = ctx.scratch->alloc({r, bank_.d_model()}, dy.dtype);
    backend.embedding_forward(ctx, dy, dispatch.order(), dyp);
    bank_.backward(ctx, dyp, xp_, dispatch.rows(), saved_, dxp);
    backend.embedding_backward(ctx, dxp, dispatch.order(), dx);
  }
  dispatch_ = nullptr;
  xp_ = Tensor();
}

}  // namespace mowe::model
