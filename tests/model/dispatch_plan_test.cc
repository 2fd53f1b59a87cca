// Dispatch plans: block ownership (equal counts, replicas, the source -> replica rule), load
// balance against round-robin and contiguous assignment on Zipf frequencies, refusals, the
// routing table, per-token routes and hand-checked expected loads and traffic.
#include "model/dispatch_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <set>

#include "model/dispatch_plan_stats.h"
#include "runtime/check.h"
#include "tests/util/expect_error.h"

namespace mowe::model {
namespace {

using mowe::testing::expect_error;

void add_bucket(config::MoweConfig& c, int ids, int blocks, int per_block, int d_ff = 4) {
  config::BucketConfig* b = c.add_buckets();
  b->set_num_routing_ids(ids), b->set_num_blocks(blocks), b->set_experts_per_block(per_block);
  b->set_expert_d_ff(d_ff);
}

// Zipf over id order: id i gets 1e9 / (i + 1).
std::vector<int64_t> zipf(int64_t vocab) {
  std::vector<int64_t> f(vocab);
  for (int64_t i = 0; i < vocab; ++i) f[i] = 1000000000 / (i + 1);
  return f;
}

PlanInputs inputs(int world_size, std::vector<int64_t> frequencies,
                  BlockAssignment assignment = BlockAssignment::kBalanced) {
  PlanInputs in;
  in.world_size = world_size;
  in.frequencies = std::move(frequencies);
  in.encoder_tokens_per_step = 800;
  in.decoder_tokens_per_step = 240;
  in.vocab_hash = 0x1234;
  in.frequency_source = "test";
  in.config_path = "configs/test.textproto";
  in.assignment = assignment;
  return in;
}

// Two buckets of 8 and 4 blocks over a 600-id vocabulary: serves 1, 2, 4, 8, 16, ...
config::MoweConfig two_buckets() {
  config::MoweConfig c;
  c.set_routing_vocab_size(600);
  c.set_num_unrouted_ids(4);
  add_bucket(c, 40, 8, 5);  // one expert per id
  add_bucket(c, 0, 4, 6);   // 556 ids on 24 experts
  return c;
}

TEST(DispatchPlan, OwnershipCoversEveryBlockOncePerReplica) {
  const config::MoweConfig c = two_buckets();
  for (int n : {1, 2, 4, 8, 16}) {
    const DispatchPlan plan = DispatchPlan::build(c, inputs(n, zipf(600)));
    for (int b = 0; b < plan.num_buckets(); ++b) {
      const BucketLayout& l = plan.table().bucket(b);
      SCOPED_TRACE(::testing::Message() << "world " << n << " bucket " << b);
      EXPECT_EQ(plan.replicas(b), n > l.num_blocks ? n / l.num_blocks : 1);
      std::vector<int> holders(l.num_blocks, 0);
      for (int r = 0; r < n; ++r) {
        auto blocks = plan.blocks_of(r, b);
        ASSERT_EQ(static_cast<int>(blocks.size()), plan.blocks_per_rank(b));
        EXPECT_TRUE(std::is_sorted(blocks.begin(), blocks.end()));
        for (int32_t k : blocks) {
          ++holders[k];
          const std::vector<int> owners = plan.owners(b, k);
          EXPECT_NE(std::find(owners.begin(), owners.end(), r), owners.end());
        }
        EXPECT_EQ(plan.replica_group(r, b), plan.owners(b, blocks[0]));
        // Local numbering: a bijection onto the rank's experts, the same on every replica.
        std::set<int32_t> seen;
        for (int32_t local = 0; local < plan.local_experts(b); ++local) {
          const int32_t e = plan.global_expert(r, b, local);
          EXPECT_EQ(plan.local_expert(b, e), local);
          seen.insert(e);
        }
        int64_t in_shards = 0;
        for (const ExpertShard& s : plan.expert_shards(r, b)) {
          EXPECT_EQ(s.d_ff, l.expert_d_ff);
          for (int64_t e = s.first_expert; e < s.first_expert + s.num_experts; ++e)
            EXPECT_EQ(seen.count(static_cast<int32_t>(e)), 1u);
          in_shards += s.num_experts;
        }
        EXPECT_EQ(in_shards, plan.local_experts(b));
      }
      for (int k = 0; k < l.num_blocks; ++k) EXPECT_EQ(holders[k], plan.replicas(b)) << k;
    }
  }
}

// max/mean of the rank loads when block k goes to rank owner(k).
double imbalance_of(const std::vector<int64_t>& block_load, int n,
                    const std::function<int(int)>& owner) {
  std::vector<double> rank(n, 0.0);
  for (size_t k = 0; k < block_load.size(); ++k) rank[owner(static_cast<int>(k))] += block_load[k];
  const double mean = std::accumulate(rank.begin(), rank.end(), 0.0) / n;
  return *std::max_element(rank.begin(), rank.end()) / mean;
}

TEST(DispatchPlan, BalancedBeatsRoundRobinAndContiguousOnZipf) {
  // One expert per id, 256 ids in 64 blocks of 4 on 8 ranks. The routing table deals experts to
  // blocks round-robin in decreasing load, but a contiguous range of blocks still starts with the
  // heaviest: the plan's assignment must beat both naive ones.
  config::MoweConfig c;
  c.set_routing_vocab_size(300);
  c.set_num_unrouted_ids(16);
  add_bucket(c, 256, 64, 4);
  add_bucket(c, 0, 8, 1);
  const int n = 8;
  const DispatchPlan plan = DispatchPlan::build(c, inputs(n, zipf(300)));
  std::vector<int64_t> block(64, 0);
  const std::vector<int64_t>& expert = plan.table().expected_loads(0);
  for (int e = 0; e < 256; ++e) block[e / 4] += expert[e];
  const double round_robin = imbalance_of(block, n, [&](int k) { return k % n; });
  const double contiguous = imbalance_of(block, n, [&](int k) { return k / 8; });
  // LPT bound: the fullest rank exceeds the mean by at most the heaviest block.
  const double mean = std::accumulate(block.begin(), block.end(), 0.0) / n;
  const double bound = 1.0 + *std::max_element(block.begin(), block.end()) / mean;
  EXPECT_LE(plan.imbalance(0), round_robin + 1e-12);
  EXPECT_LE(plan.imbalance(0), contiguous + 1e-12);
  EXPECT_LE(plan.imbalance(0), bound);
  EXPECT_LT(plan.imbalance(0), 1.02) << "round robin " << round_robin << ", bound " << bound;

  const DispatchPlan contig =
      DispatchPlan::build(c, inputs(n, zipf(300), BlockAssignment::kContiguous));
  EXPECT_DOUBLE_EQ(contig.imbalance(0), contiguous);
  for (int r = 0; r < n; ++r) {
    ASSERT_EQ(contig.expert_shards(r, 0).size(), 1u);  // one contiguous range per bucket
    EXPECT_EQ(contig.expert_shards(r, 0)[0].first_expert, r * 8 * 4);
  }
}

TEST(DispatchPlan, ReplicaGroupsAndTheSourceRule) {
  const config::MoweConfig c = two_buckets();
  const DispatchPlan plan = DispatchPlan::build(c, inputs(16, zipf(600)));
  ASSERT_EQ(plan.replicas(0), 2);  // 8 blocks
  ASSERT_EQ(plan.replicas(1), 4);  // 4 blocks
  EXPECT_EQ(plan.owners(1, 2), (std::vector<int>{8, 9, 10, 11}));
  EXPECT_EQ(plan.replica_group(10, 1), (std::vector<int>{8, 9, 10, 11}));
  EXPECT_EQ(plan.replica_group(10, 0), (std::vector<int>{10, 11}));
  for (int b = 0; b < 2; ++b) {
    const BucketLayout& l = plan.table().bucket(b);
    const int replicas = plan.replicas(b);
    for (int32_t e = 0; e < l.num_experts(); ++e) {
      const int32_t k = e / l.experts_per_block;
      for (int s = 0; s < 16; ++s) {
        const int32_t d = plan.destination(b, e, s);
        EXPECT_EQ(d, k * replicas + s % replicas);  // replica s mod R of the block
        if (s / replicas == k) {
          EXPECT_EQ(d, s);  // a rank keeps its own block's tokens
        }
      }
    }
  }
  // Each replica holds the whole block: the same local experts.
  EXPECT_EQ(plan.local_experts(1), 6);
  EXPECT_EQ(plan.global_expert(9, 1, 3), plan.global_expert(11, 1, 3));
}

TEST(DispatchPlan, RefusesWorldSizesTheLayoutCannotServe) {
  config::MoweConfig c;
  c.set_routing_vocab_size(100);
  c.set_num_unrouted_ids(0);
  add_bucket(c, 20, 8, 1);
  add_bucket(c, 0, 12, 2);
  EXPECT_EQ(world_size_refusal(c, 4), "");
  EXPECT_EQ(world_size_refusal(c, 24), "");
  for (int n : {3, 6}) {
    expect_error([&] { DispatchPlan::build(c, inputs(n, zipf(100))); },
                 {"world size " + std::to_string(n), "bucket 0",
                  "model.mowe.buckets[0].num_blocks = 8", "1, 2, 4 and every multiple of 24"});
  }
  expect_error([&] { DispatchPlan::build(c, inputs(16, zipf(100))); },
               {"world size 16", "bucket 1", "num_blocks = 12"});
  expect_error([&] { DispatchPlan::build(c, inputs(0, zipf(100))); }, {"at least 1"});
}

TEST(DispatchPlan, RoutingTableIsTheOneBuiltFromTheSameInputs) {
  const config::MoweConfig c = two_buckets();
  const std::vector<int64_t> f = zipf(600);
  const RoutingTable expected = RoutingTable::build(c, f);
  const RoutingTable got = DispatchPlan::build(c, inputs(4, f)).routing_table();
  EXPECT_EQ(got.bucket_array(), expected.bucket_array());
  EXPECT_EQ(got.expert_array(), expected.expert_array());
  ASSERT_EQ(got.num_buckets(), expected.num_buckets());
  for (int b = 0; b < got.num_buckets(); ++b) {
    EXPECT_EQ(got.expected_loads(b), expected.expected_loads(b));
    EXPECT_EQ(got.bucket(b).num_experts(), expected.bucket(b).num_experts());
  }
}

TEST(DispatchPlan, RoutesTokens) {
  const config::MoweConfig c = two_buckets();
  const DispatchPlan plan = DispatchPlan::build(c, inputs(4, zipf(600)));
  const Route pad = plan.route(kPaddingRoutingId, 0);
  EXPECT_EQ(pad.rank, -1);
  EXPECT_EQ(plan.route(0, 1).rank, -1);  // id 0 is the most frequent: unrouted
  for (int64_t id = 4; id < 600; id += 7) {
    const Route r = plan.route(id, 3);
    const int32_t e = plan.table().expert_of(id);
    EXPECT_EQ(r.bucket, plan.table().bucket_of(id));
    EXPECT_EQ(r.rank, plan.destination(r.bucket, e, 3));
    EXPECT_EQ(plan.global_expert(r.rank, r.bucket, r.local_expert), e);
  }
  EXPECT_THROW(plan.route(600, 0), Error);
}

// V = 8, 2 unrouted ids, one bucket of 6 ids on 2 blocks x 3 experts (one expert per id).
// Frequencies 100 50 | 40 30 20 10 5 5: total 260. Experts are dealt to the blocks in
// decreasing load (striped numbering): block 0 holds 40 + 20 + 5 = 65, block 1 30 + 10 + 5 = 45.
config::MoweConfig hand_config() {
  config::MoweConfig c;
  c.set_routing_vocab_size(8);
  c.set_num_unrouted_ids(2);
  add_bucket(c, 6, 2, 3);
  return c;
}
const std::vector<int64_t> kHandFrequencies = {100, 50, 40, 30, 20, 10, 5, 5};

TEST(DispatchPlan, ExpectedLoadsByHand) {
  // 2 ranks, 1040 tokens per step: rank 0 gets 1040 x 65/260 = 260, rank 1 1040 x 45/260 = 180.
  const DispatchPlan two = DispatchPlan::build(hand_config(), inputs(2, kHandFrequencies));
  EXPECT_EQ(two.tokens_per_step(), 1040);
  EXPECT_DOUBLE_EQ(two.routed_share(), 110.0 / 260.0);
  EXPECT_EQ(two.blocks_of(0, 0)[0], 0);
  EXPECT_DOUBLE_EQ(two.expected_tokens(0, 0), 260.0);
  EXPECT_DOUBLE_EQ(two.expected_tokens(1, 0), 180.0);
  EXPECT_EQ(two.capacity(0), 260);
  EXPECT_EQ(two.capacity(0, 800), 200);  // ceil(800 x 65 / 260)
  EXPECT_DOUBLE_EQ(two.imbalance(0), 65.0 / 55.0);
  // 4 ranks: each block on 2 replicas, half of its load each.
  const DispatchPlan four = DispatchPlan::build(hand_config(), inputs(4, kHandFrequencies));
  EXPECT_DOUBLE_EQ(four.expected_tokens(0, 0), 130.0);
  EXPECT_DOUBLE_EQ(four.expected_tokens(1, 0), 130.0);
  EXPECT_DOUBLE_EQ(four.expected_tokens(3, 0), 90.0);
  EXPECT_EQ(four.capacity(0), 130);
}

TEST(DispatchPlan, TrafficByHand) {
  // 2 ranks. Rank 0 sends 520 x 45/260 = 90 dispatched tokens and the outputs of the 260 / 2
  // tokens rank 1 sent it: 220; rank 1 sends 520 x 65/260 = 130 and 180 / 2 = 90: 220.
  const DispatchPlan plan = DispatchPlan::build(hand_config(), inputs(2, kHandFrequencies));
  EXPECT_NEAR(tokens_sent(plan, 0, 1040), 220.0, 1e-9);
  EXPECT_NEAR(tokens_sent(plan, 1, 1040), 220.0, 1e-9);
  TrafficOptions o{.d_model = 1, .encoder_layers = 1, .decoder_layers = 1};
  const PlanTraffic t = plan_traffic(plan, o);
  // x 4 bytes x 2 (forward, backward), one layer per stack: 800 + 240 tokens = 1040.
  EXPECT_NEAR(t.bytes_sent_mean, 220.0 * 4 * 2, 1e-6);
  EXPECT_NEAR(t.bytes_sent_max, 220.0 * 4 * 2, 1e-6);
  EXPECT_EQ(t.alltoalls, 8);
  EXPECT_EQ(t.messages_flat, 8);
  EXPECT_EQ(t.messages_hierarchical, 8);
  // One rank sends nothing.
  const DispatchPlan one = DispatchPlan::build(hand_config(), inputs(1, kHandFrequencies));
  EXPECT_NEAR(plan_traffic(one, o).bytes_sent_max, 0.0, 1e-9);
}

TEST(DispatchPlan, MessageCountsFlatAndHierarchical) {
  config::MoweConfig c;
  c.set_routing_vocab_size(200);
  add_bucket(c, 0, 64, 1);
  TrafficOptions o{.d_model = 8, .encoder_layers = 2, .decoder_layers = 2, .ranks_per_node = 8};
  const PlanTraffic t = plan_traffic(DispatchPlan::build(c, inputs(64, zipf(200))), o);
  EXPECT_EQ(t.alltoalls, 16);
  EXPECT_EQ(t.messages_flat, 16 * 63);
  EXPECT_EQ(t.messages_hierarchical, 16 * (7 + 7));
  o.ranks_per_node = 6;  // does not divide 64
  EXPECT_EQ(plan_traffic(DispatchPlan::build(c, inputs(64, zipf(200))), o).messages_hierarchical,
            -1);
}

TEST(DispatchPlan, BucketConfigHashCoversTheRoutingFields) {
  const config::MoweConfig base = two_buckets();
  const uint64_t h = bucket_config_hash(base);
  std::vector<std::function<void(config::MoweConfig&)>> changes = {
      [](auto& c) { c.set_num_unrouted_ids(5); },
      [](auto& c) { c.set_routing_vocab_size(601); },
      [](auto& c) { c.mutable_buckets(1)->set_num_blocks(2); },
      [](auto& c) { c.mutable_buckets(0)->set_experts_per_block(6); },
      [](auto& c) { c.mutable_buckets(0)->set_expert_d_ff(8); },
      [](auto& c) { c.mutable_buckets(0)->set_num_routing_ids(41); },
      [](auto& c) { c.set_expert_activation(config::GATED_GELU); },
      [](auto& c) { c.mutable_buckets(0)->set_expert_activation(config::GATED_GELU); },
      [](auto& c) { c.mutable_buckets(1)->set_expert_activation(config::GATED_GELU); },
      [](auto& c) { c.set_share_expert_parameters(false); },
  };
  for (size_t i = 0; i < changes.size(); ++i) {
    config::MoweConfig c = base;
    changes[i](c);
    EXPECT_NE(bucket_config_hash(c), h) << "change " << i;
  }
  config::MoweConfig same = base;
  same.add_encoder_layers(3);              // where the layers sit does not change the plan
  same.set_share_expert_parameters(true);  // explicit default
  same.mutable_buckets(1)->set_expert_activation(config::GELU);  // a bucket's form = the default
  EXPECT_EQ(bucket_config_hash(same), h);
}

// The hash depends on the effective form of each bucket only: every bucket set to GATED_GELU is
// the layer default GATED_GELU, and a mixed layout reached from either default hashes the same.
TEST(DispatchPlan, BucketConfigHashFollowsEffectiveForms) {
  config::MoweConfig gated_default = two_buckets();
  gated_default.set_expert_activation(config::GATED_GELU);
  config::MoweConfig gated_buckets = two_buckets();
  for (auto& b : *gated_buckets.mutable_buckets()) b.set_expert_activation(config::GATED_GELU);
  EXPECT_EQ(bucket_config_hash(gated_default), bucket_config_hash(gated_buckets));

  config::MoweConfig mixed_a = two_buckets();  // default GELU, bucket 0 gated
  mixed_a.mutable_buckets(0)->set_expert_activation(config::GATED_GELU);
  config::MoweConfig mixed_b = gated_default;  // default gated, bucket 1 GELU
  mixed_b.mutable_buckets(1)->set_expert_activation(config::GELU);
  EXPECT_EQ(bucket_config_hash(mixed_a), bucket_config_hash(mixed_b));
  config::MoweConfig reversed = two_buckets();  // bucket 1 gated instead
  reversed.mutable_buckets(1)->set_expert_activation(config::GATED_GELU);
  EXPECT_NE(bucket_config_hash(mixed_a), bucket_config_hash(reversed));
  EXPECT_NE(bucket_config_hash(mixed_a), bucket_config_hash(two_buckets()));
  EXPECT_NE(bucket_config_hash(mixed_a), bucket_config_hash(gated_default));
}

}  // namespace
}  // namespace mowe::model
