// Dispatch: the permutation groups routed tokens by (bucket, expert), stably; skipped tokens are
// left out; ids out of range are rejected.
#include "model/mowe_dispatch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "runtime/check.h"
#include "tests/util/expect_error.h"

namespace mowe::model {
namespace {

using mowe::testing::expect_error;

// One bucket of 6 ids on 4 experts, then a tail bucket of `tail_experts` experts.
RoutingTable make_table(int vocab, int tail_experts) {
  config::MoweConfig c;
  c.set_routing_vocab_size(vocab);
  c.set_num_unrouted_ids(4);
  config::BucketConfig* b0 = c.add_buckets();
  b0->set_num_routing_ids(6), b0->set_num_blocks(2), b0->set_experts_per_block(2);
  config::BucketConfig* b1 = c.add_buckets();
  b1->set_num_routing_ids(0), b1->set_num_blocks(1), b1->set_experts_per_block(tail_experts);
  std::vector<int64_t> f(vocab);
  for (int i = 0; i < vocab; ++i) f[i] = 1000000 / (1 + (i * 7919) % vocab);
  return RoutingTable::build(c, f);
}

std::vector<int32_t> random_ids(int n, int vocab, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = dist(rng);
  return ids;
}

// Every invariant of a dispatch against the table it came from.
void check_dispatch(const RoutingTable& t, const std::vector<int32_t>& ids, const Dispatch& d,
                    int32_t deactivate_above) {
  const ExpertRows& rows = d.rows();
  std::vector<int32_t> want;  // routed tokens
  for (int32_t n = 0; n < static_cast<int32_t>(ids.size()); ++n) {
    const bool skip = t.bucket_of(ids[n]) == RoutingTable::kUnrouted ||
                      (deactivate_above > 0 && ids[n] > deactivate_above);
    if (!skip) want.push_back(n);
  }
  ASSERT_EQ(d.num_tokens(), static_cast<int64_t>(ids.size()));
  ASSERT_EQ(d.num_routed(), static_cast<int64_t>(want.size()));
  const int32_t* order = d.order().ptr<int32_t>();
  std::vector<int32_t> got(order, order + d.num_routed());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want) << "order is a permutation of the routed tokens";

  int64_t next = 0;
  for (size_t gi = 0; gi < rows.groups.size(); ++gi) {
    const ExpertGroup& g = rows.groups[gi];
    ASSERT_EQ(g.begin, next) << "groups cover the rows contiguously";
    ASSERT_GT(g.rows(), 0);
    next = g.end;
    if (gi > 0) {
      const ExpertGroup& p = rows.groups[gi - 1];
      EXPECT_LT(std::pair(p.bucket, p.expert), std::pair(g.bucket, g.expert)) << "sorted, unique";
    }
    EXPECT_GE(g.begin, rows.bucket_rows[g.bucket]);
    EXPECT_LE(g.end, rows.bucket_rows[g.bucket + 1]);
    for (int64_t j = g.begin; j < g.end; ++j) {
      EXPECT_EQ(t.bucket_of(ids[order[j]]), g.bucket);
      EXPECT_EQ(t.expert_of(ids[order[j]]), g.expert) << "a token reaches its id's expert";
      EXPECT_EQ(rows.row_expert[j], g.expert);
      if (j > g.begin) {
        EXPECT_LT(order[j - 1], order[j]) << "stable: token order inside a group";
      }
    }
  }
  EXPECT_EQ(next, d.num_routed());
  for (int b = 0; b < rows.num_buckets(); ++b)
    for (const ExpertGroup& g : rows.bucket_group_span(b)) EXPECT_EQ(g.bucket, b);
}

TEST(Dispatch, GroupsTokensByBucketAndExpert) {
  const RoutingTable t = make_table(40, 3);
  const std::vector<int32_t> ids = random_ids(200, 40, 1);
  check_dispatch(t, ids, Dispatch::build(t, ids), 0);
}

TEST(Dispatch, ManyExpertsNeedSeveralRadixPasses) {
  const RoutingTable t = make_table(200000, 70000);  // keys above 2^16: three byte passes
  const std::vector<int32_t> ids = random_ids(5000, 200000, 2);
  const Dispatch d = Dispatch::build(t, ids);
  check_dispatch(t, ids, d, 0);
  EXPECT_GT(d.rows().groups.size(), 4000u);
}

TEST(Dispatch, DeactivatedIdsAreSkipped) {
  const RoutingTable t = make_table(40, 3);
  const std::vector<int32_t> ids = random_ids(200, 40, 3);
  const Dispatch d = Dispatch::build(t, ids, 25);
  check_dispatch(t, ids, d, 25);
  for (int64_t j = 0; j < d.num_routed(); ++j) EXPECT_LE(ids[d.order().ptr<int32_t>()[j]], 25);
}

TEST(Dispatch, ReassignReusesTheObjectAndMatchesAFreshBuild) {
  const RoutingTable t = make_table(40, 3);
  Dispatch d;
  d.assign(t, random_ids(300, 40, 4));
  const std::vector<int32_t> ids = random_ids(50, 40, 5);
  d.assign(t, ids);
  check_dispatch(t, ids, d, 0);
  const Dispatch fresh = Dispatch::build(t, ids);
  EXPECT_EQ(d.rows().row_expert, fresh.rows().row_expert);
  EXPECT_EQ(d.rows().bucket_rows, fresh.rows().bucket_rows);
  d.assign(t, {});
  EXPECT_EQ(d.num_routed(), 0);
  EXPECT_TRUE(d.rows().groups.empty());
}

TEST(Dispatch, SameIdSameExpertAcrossBatches) {
  const RoutingTable t = make_table(40, 3);
  std::vector<std::set<std::pair<int32_t, int32_t>>> seen(40);
  for (uint64_t seed = 10; seed < 15; ++seed) {
    const std::vector<int32_t> ids = random_ids(64, 40, seed);
    const Dispatch d = Dispatch::build(t, ids);
    for (const ExpertGroup& g : d.rows().groups)
      for (int64_t j = g.begin; j < g.end; ++j)
        seen[ids[d.order().ptr<int32_t>()[j]]].insert({g.bucket, g.expert});
  }
  for (int id = 0; id < 40; ++id) EXPECT_LE(seen[id].size(), 1u) << "routing id " << id;
}

TEST(Dispatch, PaddingIsNeverRouted) {
  const RoutingTable t = make_table(40, 3);
  std::vector<int32_t> ids = random_ids(100, 40, 6);
  const Dispatch all = Dispatch::build(t, ids);
  for (int i = 0; i < 100; i += 3) ids[i] = kPaddingRoutingId;
  const Dispatch d = Dispatch::build(t, ids);
  for (int64_t j = 0; j < d.num_routed(); ++j)
    EXPECT_NE(d.order().ptr<int32_t>()[j] % 3, 0) << "a padding position was routed";
  EXPECT_LT(d.num_routed(), all.num_routed());
}

TEST(Dispatch, RejectsIdsOutsideTheVocabulary) {
  const RoutingTable t = make_table(40, 3);
  expect_error(
      [&] {
        Dispatch::build(t, std::vector<int32_t>{1, 2, 40});
      },
      {"routing id 40 at token 2"});
  EXPECT_THROW(Dispatch::build(t, std::vector<int32_t>{-2}), Error);  // -1 is padding
}

}  // namespace
}  // namespace mowe::model
