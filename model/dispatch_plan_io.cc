// DispatchPlan <-> DispatchPlanFile, and the check that a plan was built for this job.
#include "model/dispatch_plan.h"
#include "runtime/check.h"

namespace mowe::model {
namespace {

std::string rebuild_hint(const DispatchPlan& plan, int world_size) {
  return fmt::format("rebuild it with mowe_plan --config {} --world-size {}",
                     plan.config_path().empty() ? "<config>" : plan.config_path(), world_size);
}

}  // namespace

DispatchPlan DispatchPlan::from_proto(const DispatchPlanFile& file, const std::string& source) {
  if (file.format_version() != kFormatVersion)
    throw UserError(fmt::format(
        "dispatch plan {} has format version {}, this program reads version {}: rebuild it with "
        "mowe_plan",
        source, file.format_version(), kFormatVersion));
  MOWE_CHECK(file.bucket_of_id_size() == file.expert_of_id_size(),
             "dispatch plan {}: {} bucket entries but {} expert entries", source,
             file.bucket_of_id_size(), file.expert_of_id_size());
  std::vector<BucketLayout> layouts;
  std::vector<std::vector<int64_t>> loads;
  std::vector<std::vector<int32_t>> owners;
  for (const BucketPlan& b : file.buckets()) {
    layouts.push_back(
        {b.num_routing_ids(), b.num_blocks(), b.experts_per_block(), b.expert_d_ff()});
    loads.emplace_back(b.expert_load().begin(), b.expert_load().end());
    owners.emplace_back(b.block_rank().begin(), b.block_rank().end());
  }
  RoutingTable table(std::move(layouts),
                     std::vector<int32_t>(file.bucket_of_id().begin(), file.bucket_of_id().end()),
                     std::vector<int32_t>(file.expert_of_id().begin(), file.expert_of_id().end()),
                     std::move(loads));
  DispatchPlanFile meta = file;
  meta.clear_bucket_of_id();
  meta.clear_expert_of_id();
  meta.clear_buckets();
  DispatchPlan plan(std::move(meta), std::move(table), std::move(owners), source);
  for (int b = 0; b < file.buckets_size(); ++b)
    MOWE_CHECK(
        file.buckets(b).replicas() == plan.replicas(b),
        "dispatch plan {}: bucket {} records {} replicas, but {} ranks over {} blocks give {}",
        source, b, file.buckets(b).replicas(), plan.world_size(), file.buckets(b).num_blocks(),
        plan.replicas(b));
  return plan;
}

DispatchPlanFile DispatchPlan::to_proto() const {
  DispatchPlanFile file = meta_;
  file.mutable_bucket_of_id()->Add(table_.bucket_array().begin(), table_.bucket_array().end());
  file.mutable_expert_of_id()->Add(table_.expert_array().begin(), table_.expert_array().end());
  for (int b = 0; b < num_buckets(); ++b) {
    const BucketLayout& l = table_.bucket(b);
    BucketPlan* p = file.add_buckets();
    p->set_num_routing_ids(l.num_routing_ids);
    p->set_num_blocks(l.num_blocks);
    p->set_experts_per_block(l.experts_per_block);
    p->set_expert_d_ff(l.expert_d_ff);
    const std::vector<int64_t>& loads = table_.expected_loads(b);
    p->mutable_expert_load()->Add(loads.begin(), loads.end());
    p->set_replicas(buckets_[b].replicas);
    p->mutable_block_rank()->Add(buckets_[b].block_rank.begin(), buckets_[b].block_rank.end());
  }
  return file;
}

void DispatchPlan::check(int world_size, uint64_t vocab_hash, uint64_t bucket_hash) const {
  if (world_size != this->world_size())
    throw UserError(fmt::format("dispatch plan {} was built for {} ranks, this job has {}: {}",
                                source_, this->world_size(), world_size,
                                rebuild_hint(*this, world_size)));
  if (vocab_hash != this->vocab_hash())
    throw UserError(fmt::format(
        "dispatch plan {} was built for routing vocabulary hash {:016x} (frequencies from {}), "
        "this job's routing vocabulary has hash {:016x}: {}",
        source_, this->vocab_hash(), frequency_source(), vocab_hash,
        rebuild_hint(*this, world_size)));
  if (bucket_hash != bucket_config_hash())
    throw UserError(fmt::format(
        "dispatch plan {} was built for bucket configuration hash {:016x}, this job's model.mowe "
        "has hash {:016x} (num_unrouted_ids, routing_vocab_size, buckets, expert forms or "
        "share_expert_parameters differ): {}",
        source_, bucket_config_hash(), bucket_hash, rebuild_hint(*this, world_size)));
}

}  // namespace mowe::model
