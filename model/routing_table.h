// The fixed routing function of MoWE (paper, sections 2.2-2.3): routing id -> (frequency bucket,
// expert inside the bucket), or unrouted. Built once from the routing-id frequencies, or from the
// explicit arrays of a dispatch plan file, and never changed during training: a token with a
// given routing id always reaches the same expert.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/proto/config.pb.h"

namespace mowe::model {

// The expert layout of one frequency bucket. Expert e lives in block e / experts_per_block.
struct BucketLayout {
  int64_t num_routing_ids = 0;  // routing ids assigned to this bucket
  int32_t num_blocks = 1;
  int32_t experts_per_block = 1;
  int32_t expert_d_ff = 1;  // F of this bucket's experts
  int32_t num_experts() const { return num_blocks * experts_per_block; }
};

class RoutingTable {
 public:
  static constexpr int32_t kUnrouted = -1;

  RoutingTable() = default;  // empty: no ids, no buckets

  // From the config and one frequency per routing id (frequencies.size() == routing_vocab_size):
  // ids sorted by frequency (descending, ties by id); the top num_unrouted_ids are never routed;
  // bucket 0 takes the next buckets[0].num_routing_ids ids, and so on (0 = all the rest); ids
  // beyond the buckets are unrouted. Inside a bucket with fewer experts than ids, ids go in
  // frequency order to the least-loaded expert (an id weighs frequency + 1; ties: fewer ids,
  // then lower index), which balances the expected token load; otherwise the k-th id of the
  // bucket gets the k-th expert. Experts are numbered so that the k-th (in decreasing load) lands
  // in block k mod K: blocks, and contiguous ranges of blocks, carry similar loads.
  static RoutingTable build(const config::MoweConfig& config, std::span<const int64_t> frequencies);

  // From explicit arrays (a dispatch plan file): per routing id its bucket and expert (both
  // kUnrouted, or both valid), and per bucket the expected load of each of its experts.
  // Everything is validated; errors name the offending id or bucket.
  RoutingTable(std::vector<BucketLayout> buckets, std::vector<int32_t> bucket_of_id,
               std::vector<int32_t> expert_of_id, std::vector<std::vector<int64_t>> expected_loads);

  int64_t vocab_size() const { return static_cast<int64_t>(bucket_.size()); }
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  const BucketLayout& bucket(int b) const { return buckets_.at(b); }
  const std::vector<BucketLayout>& buckets() const { return buckets_; }

  // kUnrouted for unrouted ids; throws Error for an id outside [0, vocab_size).
  int32_t bucket_of(int64_t id) const;
  int32_t expert_of(int64_t id) const;
  int32_t block_of(int bucket, int32_t expert) const;

  // Sum of the frequencies of the ids sharing each expert of bucket b: [E_b].
  const std::vector<int64_t>& expected_loads(int b) const { return loads_.at(b); }

  // The raw arrays, [V] each, for writing a plan file.
  const std::vector<int32_t>& bucket_array() const { return bucket_; }
  const std::vector<int32_t>& expert_array() const { return expert_; }

 private:
  void validate() const;

  std::vector<BucketLayout> buckets_;
  std::vector<int32_t> bucket_;  // [V]
  std::vector<int32_t> expert_;  // [V]
  std::vector<std::vector<int64_t>> loads_;
};

// Content hash of the routing function: every id's bucket and expert and every bucket's layout.
// Two tables with the same hash send every token to the same expert.
uint64_t routing_table_hash(const RoutingTable& table);

}  // namespace mowe::model
