#include "launch/train/sharding.h"

#include <cmath>

#include "runtime/backend.h"
#include "runtime/device.h"

namespace mowe::train {

void assign_sharding(model::ParameterStore& store,
                     const std::vector<model::ExpertParameter>& experts,
                     const model::DispatchPlan* plan, int rank, int world_size,
                     const std::vector<comm::Communicator*>& replica_groups) {
  for (const auto& p : store.all()) {
    p->sharding.replicas = world_size;
    p->sharding.writer = rank == 0;
    p->sharding.replica_group = nullptr;  // dense gradients: the bucketed allreduce
  }
  MOWE_CHECK(experts.empty() || plan, "expert parameters need a dispatch plan");
  for (const model::ExpertParameter& e : experts) {
    model::Sharding& s = e.parameter->sharding;
    const model::BucketLayout& layout = plan->table().bucket(e.bucket);
    s.global_shape = e.parameter->value.tensor().shape.with_dim(0, layout.num_experts());
    s.bucket = e.bucket;
    s.unit_rows = layout.experts_per_block;
    s.replicas = plan->replicas(e.bucket);
    s.writer = plan->replica_group(rank, e.bucket).front() == rank;
    s.replica_group = replica_groups.at(e.bucket);
    // Summing replicas' gradients brings rows the other copies touched: track no rows there.
    if (s.replicas > 1) e.parameter->touched.disable();
  }
}

void sum_replica_gradients(const model::ParameterStore& store) {
  for (const auto& p : store.all()) {
    comm::Communicator* group = p->sharding.replica_group;
    if (p->trainable && group && group->size() > 1) group->allreduce(p->grad, comm::ReduceOp::Sum);
  }
}

double global_grad_norm(const model::ParameterStore& store, comm::Communicator& comm,
                        Arena& scratch) {
  // Accumulated where the gradients live; one download at the end.
  const Context ctx{.device = scratch.device(), .scratch = &scratch};
  Backend& backend = backend_for(scratch.device());
  ArenaScope scope(scratch);
  const Tensor acc = scratch.alloc_zeros({1}, DType::F64);
  for (const auto& p : store.all()) {
    if (!p->trainable || !p->sharding.writer) continue;
    const Tensor& g = p->grad.tensor();
    if (!p->touched.enabled()) {
      backend.accumulate_sum_squares(ctx, g, acc);
      continue;
    }
    p->touched.for_each_run(g.dim(0), [&](int64_t begin, int64_t end) {
      backend.accumulate_sum_squares(ctx, g.rows_slice(begin, end), acc);
    });
  }
  double sum = 0;
  download(&sum, acc, ctx.stream);
  Tensor total(&sum, DType::F64, Device::CPU, {1});
  comm.allreduce(total, comm::ReduceOp::Sum);
  return std::sqrt(sum);
}

}  // namespace mowe::train
