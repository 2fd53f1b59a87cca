#include "model/routing_table.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <queue>
#include <string_view>
#include <tuple>

#include "runtime/check.h"
#include "runtime/hash.h"

namespace mowe::model {
namespace {

// Experts are filled in decreasing load; numbering the k-th one (k mod K) * E + k / K (K blocks
// of E experts) deals them to the blocks round-robin, so every block gets a similar load and any
// contiguous range of blocks (a rank's share) is balanced too.
int32_t striped(int32_t k, int32_t num_blocks, int32_t experts_per_block) {
  return (k % num_blocks) * experts_per_block + k / num_blocks;
}

// Assigns the ids of one bucket (in frequency order) to its experts; returns the expert loads.
std::vector<int64_t> assign_bucket(std::span<const int32_t> ids, std::span<const int64_t> freq,
                                   int32_t bucket, const BucketLayout& layout,
                                   std::vector<int32_t>& bucket_of,
                                   std::vector<int32_t>& expert_of) {
  const int32_t num_experts = layout.num_experts();
  std::vector<int64_t> loads(num_experts, 0);
  auto put = [&](int32_t id, int32_t k) {
    const int32_t expert = striped(k, layout.num_blocks, layout.experts_per_block);
    bucket_of[id] = bucket;
    expert_of[id] = expert;
    loads[expert] += freq[id];
  };
  if (static_cast<int64_t>(ids.size()) <= num_experts) {
    for (size_t k = 0; k < ids.size(); ++k) put(ids[k], static_cast<int32_t>(k));
    return loads;
  }
  // Greedy longest-processing-time: the most frequent id first, each to the expert with the
  // smallest (weight, ids so far, index). An id weighs its frequency + 1, so that the many ids
  // never seen in the frequency sample spread over the experts instead of piling on the least
  // loaded one (they will be seen in training).
  using Slot = std::tuple<int64_t, int64_t, int32_t>;
  std::priority_queue<Slot, std::vector<Slot>, std::greater<Slot>> heap;
  for (int32_t e = 0; e < num_experts; ++e) heap.emplace(0, 0, e);
  for (int32_t id : ids) {
    auto [weight, count, e] = heap.top();
    heap.pop();
    put(id, e);
    heap.emplace(weight + freq[id] + 1, count + 1, e);
  }
  return loads;
}

}  // namespace

RoutingTable RoutingTable::build(const config::MoweConfig& config,
                                 std::span<const int64_t> frequencies) {
  const int64_t vocab = config.routing_vocab_size();
  MOWE_REQUIRE(static_cast<int64_t>(frequencies.size()) == vocab,
               "routing table: {} routing-id frequencies given, but model.mowe.routing_vocab_size "
               "is {}",
               frequencies.size(), vocab);
  for (int64_t id = 0; id < vocab; ++id)
    MOWE_CHECK(frequencies[id] >= 0, "routing table: frequency of routing id {} is negative ({})",
               id, frequencies[id]);
  MOWE_REQUIRE(
      config.num_unrouted_ids() <= vocab,
      "routing table: model.mowe.num_unrouted_ids ({}) exceeds the routing vocabulary ({})",
      config.num_unrouted_ids(), vocab);

  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return frequencies[a] != frequencies[b] ? frequencies[a] > frequencies[b] : a < b;
  });

  RoutingTable t;
  t.bucket_.assign(vocab, kUnrouted);
  t.expert_.assign(vocab, kUnrouted);
  int64_t next = config.num_unrouted_ids();
  for (int b = 0; b < config.buckets_size(); ++b) {
    const config::BucketConfig& bc = config.buckets(b);
    const bool rest = bc.num_routing_ids() == 0;
    MOWE_REQUIRE(!rest || b + 1 == config.buckets_size(),
                 "routing table: model.mowe.buckets[{}].num_routing_ids = 0 (all remaining ids) "
                 "is only allowed on the last bucket",
                 b);
    const int64_t count = rest ? vocab - next : bc.num_routing_ids();
    MOWE_REQUIRE(next + count <= vocab,
                 "routing table: model.mowe.buckets[{}] needs routing ids [{}, {}) in frequency "
                 "order, but the routing vocabulary has only {}",
                 b, next, next + count, vocab);
    BucketLayout layout{count, bc.num_blocks(), bc.experts_per_block(), bc.expert_d_ff()};
    t.loads_.push_back(assign_bucket(std::span(order).subspan(next, count), frequencies, b, layout,
                                     t.bucket_, t.expert_));
    t.buckets_.push_back(layout);
    next += count;
  }
  t.validate();
  return t;
}

RoutingTable::RoutingTable(std::vector<BucketLayout> buckets, std::vector<int32_t> bucket_of_id,
                           std::vector<int32_t> expert_of_id,
                           std::vector<std::vector<int64_t>> expected_loads)
    : buckets_(std::move(buckets)),
      bucket_(std::move(bucket_of_id)),
      expert_(std::move(expert_of_id)),
      loads_(std::move(expected_loads)) {
  MOWE_CHECK(bucket_.size() == expert_.size(),
             "routing table: {} bucket entries but {} expert entries (one each per routing id)",
             bucket_.size(), expert_.size());
  MOWE_CHECK(loads_.size() == buckets_.size(),
             "routing table: expected loads for {} buckets, but the layout has {} buckets",
             loads_.size(), buckets_.size());
  validate();
}

void RoutingTable::validate() const {
  std::vector<int64_t> ids_in(buckets_.size(), 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const BucketLayout& l = buckets_[b];
    MOWE_CHECK(l.num_blocks >= 1 && l.experts_per_block >= 1 && l.expert_d_ff >= 1,
               "routing table: bucket {} has {} blocks x {} experts of width {}; all must be >= 1",
               b, l.num_blocks, l.experts_per_block, l.expert_d_ff);
    MOWE_CHECK(static_cast<int64_t>(loads_[b].size()) == l.num_experts(),
               "routing table: bucket {} has {} experts but {} expected loads", b, l.num_experts(),
               loads_[b].size());
  }
  for (size_t id = 0; id < bucket_.size(); ++id) {
    const int32_t b = bucket_[id], e = expert_[id];
    if (b == kUnrouted && e == kUnrouted) continue;
    MOWE_CHECK(b >= 0 && b < num_buckets(),
               "routing table: routing id {} has bucket {}, outside [0, {}) (or both -1)", id, b,
               num_buckets());
    MOWE_CHECK(e >= 0 && e < buckets_[b].num_experts(),
               "routing table: routing id {} has expert {}, outside bucket {}'s [0, {})", id, e, b,
               buckets_[b].num_experts());
    ++ids_in[b];
  }
  for (size_t b = 0; b < buckets_.size(); ++b)
    MOWE_CHECK(ids_in[b] == buckets_[b].num_routing_ids,
               "routing table: bucket {} declares {} routing ids but {} map to it", b,
               buckets_[b].num_routing_ids, ids_in[b]);
}

int32_t RoutingTable::bucket_of(int64_t id) const {
  MOWE_CHECK(id >= 0 && id < vocab_size(),
             "routing id {} is outside the routing vocabulary [0, {})", id, vocab_size());
  return bucket_[id];
}

int32_t RoutingTable::expert_of(int64_t id) const {
  MOWE_CHECK(id >= 0 && id < vocab_size(),
             "routing id {} is outside the routing vocabulary [0, {})", id, vocab_size());
  return expert_[id];
}

int32_t RoutingTable::block_of(int bucket, int32_t expert) const {
  const BucketLayout& l = buckets_.at(bucket);
  MOWE_CHECK(expert >= 0 && expert < l.num_experts(), "expert {} is outside bucket {}'s [0, {})",
             expert, bucket, l.num_experts());
  return expert / l.experts_per_block;
}

uint64_t routing_table_hash(const RoutingTable& table) {
  uint64_t h = hash_ints(0x726f7574696e67ULL, static_cast<uint64_t>(table.vocab_size()),
                         static_cast<uint64_t>(table.num_buckets()));
  for (const BucketLayout& b : table.buckets())
    h = hash_ints(h, static_cast<uint64_t>(b.num_routing_ids), b.num_blocks, b.experts_per_block,
                  b.expert_d_ff);
  const auto bytes = [](const std::vector<int32_t>& v) {
    return std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
  };
  h = hash_bytes(bytes(table.bucket_array()), h);
  return hash_bytes(bytes(table.expert_array()), h);
}

}  // namespace mowe::model
