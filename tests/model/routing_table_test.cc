// Routing table: the frequency-order rule, load balance inside buckets, the explicit-array
// constructor and the errors.
#include "model/routing_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "runtime/check.h"
#include "tests/util/expect_error.h"

namespace mowe::model {
namespace {

using mowe::testing::expect_error;

config::BucketConfig* add_bucket(config::MoweConfig& c, int ids, int blocks, int per_block,
                                 int d_ff) {
  config::BucketConfig* b = c.add_buckets();
  b->set_num_routing_ids(ids), b->set_num_blocks(blocks), b->set_experts_per_block(per_block);
  b->set_expert_d_ff(d_ff);
  return b;
}

// Zipf frequencies (rank r gets scale / (r + 1)) over a seeded shuffle of the ids.
std::vector<int64_t> zipf(int64_t vocab, int64_t scale, uint64_t seed) {
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(seed));
  std::vector<int64_t> f(vocab);
  for (int64_t r = 0; r < vocab; ++r) f[ids[r]] = scale / (r + 1);
  return f;
}

TEST(RoutingTable, FrequencyOrderDecidesUnroutedAndBuckets) {
  config::MoweConfig c;
  c.set_routing_vocab_size(10);
  c.set_num_unrouted_ids(2);
  add_bucket(c, 3, 1, 3, 4);
  add_bucket(c, 2, 2, 1, 2);
  // Frequency order (ties by id: 3 before 9): 7, 2, 0, 5, 3, 9, 1, 4, 6, 8.
  const std::vector<int64_t> f = {50, 3, 90, 5, 2, 40, 1, 100, 0, 5};
  RoutingTable t = RoutingTable::build(c, f);
  ASSERT_EQ(t.num_buckets(), 2);
  EXPECT_EQ(t.bucket_of(7), RoutingTable::kUnrouted);
  EXPECT_EQ(t.bucket_of(2), RoutingTable::kUnrouted);
  EXPECT_EQ(t.expert_of(2), RoutingTable::kUnrouted);
  for (int id : {0, 5, 3}) EXPECT_EQ(t.bucket_of(id), 0) << id;
  EXPECT_EQ(t.expert_of(0), 0);  // as many experts as ids: one each, in frequency order
  EXPECT_EQ(t.expert_of(5), 1);
  EXPECT_EQ(t.expert_of(3), 2);
  EXPECT_EQ(t.bucket_of(9), 1);  // bucket 1: ids 9 and 1
  EXPECT_EQ(t.expert_of(9), 0);
  EXPECT_EQ(t.expert_of(1), 1);
  for (int id : {4, 6, 8}) EXPECT_EQ(t.bucket_of(id), RoutingTable::kUnrouted) << "beyond buckets";
  EXPECT_EQ(t.bucket(0).num_routing_ids, 3);
  EXPECT_EQ(t.block_of(1, 1), 1);
  EXPECT_EQ(t.expected_loads(0), (std::vector<int64_t>{50, 40, 5}));
  EXPECT_EQ(t.expected_loads(1), (std::vector<int64_t>{5, 3}));
}

TEST(RoutingTable, LastBucketTakesTheRestAndSharedExpertsBalanceLoad) {
  config::MoweConfig c;
  c.set_routing_vocab_size(12);
  c.set_num_unrouted_ids(1);
  add_bucket(c, 0, 1, 3, 4);  // 11 ids on 3 experts
  std::vector<int64_t> f = {100, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0};
  RoutingTable t = RoutingTable::build(c, f);
  EXPECT_EQ(t.bucket(0).num_routing_ids, 11);
  // Greedy in frequency order to the least-loaded expert, an id weighing frequency + 1 (ties:
  // fewer ids, lower index): weights 10->0, 9->1, 8->2, 7->2 (15), 6->1 (15), 5->0 (15), 4->0,
  // 3->1, 2->2 (17), then the zero-frequency ids: 1->2 (18), 1->1 (18, fewer ids than 2).
  EXPECT_EQ(t.expected_loads(0), (std::vector<int64_t>{16, 15, 14}));
  const std::vector<int32_t> want = {-1, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1};
  for (int id = 0; id < 12; ++id) EXPECT_EQ(t.expert_of(id), want[id]) << id;
}

TEST(RoutingTable, ZipfLoadIsBalancedAcrossExperts) {
  // A scaled-down Table 6: 16 unrouted ids, a frequent bucket with fewer experts than ids, and a
  // long tail bucket whose experts are shared by ~50 ids each.
  config::MoweConfig c;
  const int64_t vocab = 100000;
  c.set_routing_vocab_size(vocab);
  c.set_num_unrouted_ids(16);
  add_bucket(c, 1000, 16, 8, 64);
  add_bucket(c, 0, 64, 32, 8);
  const std::vector<int64_t> f = zipf(vocab, int64_t{1} << 40, 9);
  RoutingTable t = RoutingTable::build(c, f);
  for (int b = 0; b < 2; ++b) {
    const std::vector<int64_t>& load = t.expected_loads(b);
    int64_t max_id = 0;
    for (int64_t id = 0; id < vocab; ++id)
      if (t.bucket_of(id) == b) max_id = std::max(max_id, f[id]);
    const double total = std::accumulate(load.begin(), load.end(), 0.0);
    const double mean = total / static_cast<double>(load.size());
    const double max = static_cast<double>(*std::max_element(load.begin(), load.end()));
    // The greedy bound: when the fullest expert got its last id it was the least loaded one.
    // (+1e-6 of the total: the greedy counts each id as frequency + 1.)
    EXPECT_LE(max, mean + static_cast<double>(max_id) + 1e-6 * total) << "bucket " << b;
    if (b == 1) {
      EXPECT_LE(max / mean, 1.02) << "tail ids are small against the mean load";
    }
  }
  // The same id always reaches the same expert: rebuilding gives the same table.
  RoutingTable again = RoutingTable::build(c, f);
  EXPECT_EQ(again.expert_array(), t.expert_array());
  EXPECT_EQ(again.bucket_array(), t.bucket_array());
}

TEST(RoutingTable, ExplicitArraysReproduceTheBuiltTable) {
  config::MoweConfig c;
  c.set_routing_vocab_size(500);
  c.set_num_unrouted_ids(16);
  add_bucket(c, 100, 4, 30, 8);
  add_bucket(c, 0, 2, 16, 4);
  RoutingTable built = RoutingTable::build(c, zipf(500, 1 << 20, 2));
  std::vector<std::vector<int64_t>> loads = {built.expected_loads(0), built.expected_loads(1)};
  RoutingTable copy(built.buckets(), built.bucket_array(), built.expert_array(), loads);
  for (int64_t id = 0; id < 500; ++id) {
    EXPECT_EQ(copy.bucket_of(id), built.bucket_of(id));
    EXPECT_EQ(copy.expert_of(id), built.expert_of(id));
  }
  EXPECT_EQ(copy.expected_loads(1), built.expected_loads(1));
  EXPECT_EQ(copy.block_of(0, 119), 3);
}

TEST(RoutingTable, ClearErrors) {
  config::MoweConfig c;
  c.set_routing_vocab_size(100);
  c.set_num_unrouted_ids(4);
  add_bucket(c, 0, 1, 8, 4);
  expect_error([&] { RoutingTable::build(c, std::vector<int64_t>(99, 1)); },
               {"99", "100", "routing_vocab_size"});
  RoutingTable t = RoutingTable::build(c, std::vector<int64_t>(100, 1));
  expect_error([&] { t.bucket_of(100); }, {"100", "[0, 100)"});
  EXPECT_THROW(t.expert_of(-1), Error);

  config::MoweConfig too_many;
  too_many.set_routing_vocab_size(20);
  too_many.set_num_unrouted_ids(4);
  add_bucket(too_many, 17, 1, 1, 1);
  expect_error([&] { RoutingTable::build(too_many, std::vector<int64_t>(20, 1)); }, {"buckets[0]"});
  config::MoweConfig rest_first = c;
  add_bucket(rest_first, 5, 1, 1, 1);
  expect_error([&] { RoutingTable::build(rest_first, std::vector<int64_t>(100, 1)); },
               {"only allowed on the last bucket"});
  std::vector<int64_t> negative(100, 1);
  negative[7] = -3;
  expect_error([&] { RoutingTable::build(c, negative); }, {"routing id 7"});

  // Explicit arrays: an expert outside its bucket, and arrays of different lengths.
  std::vector<BucketLayout> layout = {{2, 1, 2, 4}};
  expect_error(
      [&] {
        RoutingTable(layout, {0, 0, -1}, {0, 2, -1}, {{1, 1}});
      },
      {"routing id 1", "expert 2"});
  expect_error(
      [&] {
        RoutingTable(layout, {0, 0, -1}, {0, 1}, {{1, 1}});
      },
      {"3 bucket entries but 2 expert entries"});
  expect_error(
      [&] {
        RoutingTable(layout, {0, -1, -1}, {0, -1, -1}, {{1, 1}});
      },
      {"declares 2 routing ids but 1 map to it"});
}

}  // namespace
}  // namespace mowe::model
