// The sharding facts of every parameter (model::Sharding) and the three things computed from
// them, one function each, called by the trainer and the tests alike: the global gradient norm,
// the reduction of gradients between replicas of an expert block, and (checkpoint.h) which rows
// this rank writes.
#pragma once

#include <vector>

#include "comm/communicator.h"
#include "model/dispatch_plan.h"
#include "model/t5_model.h"

namespace mowe::train {

// Dense parameters: the whole tensor on every rank, written by rank 0. Expert parameters: the
// plan's blocks of this rank (global shape [E, ...], one unit per block), held by the bucket's
// replica group and written by its first rank. `replica_groups[b]` is bucket b's group (or null).
// `plan` may be null when there are no expert parameters.
void assign_sharding(model::ParameterStore& store,
                     const std::vector<model::ExpertParameter>& experts,
                     const model::DispatchPlan* plan, int rank, int world_size,
                     const std::vector<comm::Communicator*>& replica_groups);

// Sums the gradients of replicated expert blocks inside their replica groups (dense gradients go
// through the bucketed allreduce that overlaps the backward pass).
void sum_replica_gradients(const model::ParameterStore& store);

// The L2 norm of all gradients of the (global) model as one vector: every row counted once, by
// the rank that writes it. Collective over `comm`. `scratch` serves the backend's reductions.
double global_grad_norm(const model::ParameterStore& store, comm::Communicator& comm,
                        Arena& scratch);

}  // namespace mowe::train
