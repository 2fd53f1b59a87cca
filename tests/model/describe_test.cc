// Analytic parameter counts against the paper's figures (Tables 2, 6, 7) and against
// the tensors a model actually allocates.
#include "model/describe.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "launch/train/config_rules.h"
#include "model/config_rules.h"
#include "model/t5_model.h"
#include "runtime/config/config.h"

namespace mowe::model {
namespace {

ModelSize size_of(const std::string& name, const std::vector<std::string>& overrides = {}) {
  auto cfg = train::load_config(std::string(MOWE_SOURCE_DIR) + "/configs/" + name, overrides);
  return describe(cfg.model(), 512, 114);
}

// Paper figures are rounded; each is checked to the precision it is quoted with.
void expect_about(int64_t value, double quoted, double unit, const char* what) {
  EXPECT_NEAR(value / unit, quoted, 0.0005 * quoted + 0.5e-3) << what << ": " << value;
}

// The dense part of a T5.1.1 model whose `mowe_blocks` blocks (over both stacks) have a MoWE
// layer instead of the FFN, from the tensor shapes: embedding and output projection V C; per
// stack its relative position bias K H and final norm C; per block q, k, v, o (C HD each) with a
// pre-norm per attention (the decoder has two attentions), and a gated-GELU FFN (wi_0, wi_1 [C,F],
// wo [F,C]) with its pre-norm, or only the MoWE layer's pre-norm.
int64_t dense_params(int64_t c, int64_t hd, int64_t f, int64_t blocks_per_stack,
                     int64_t mowe_blocks) {
  const int64_t v = 32128, k = 32, h = hd / 64;
  const int64_t attention = 4 * c * hd + c;
  const int64_t ffn = 2 * c * f + f * c + c;
  const int64_t stacks = 2 * (k * h + c);
  const int64_t blocks = blocks_per_stack * attention + blocks_per_stack * 2 * attention +
                         (2 * blocks_per_stack - mowe_blocks) * ffn + mowe_blocks * c;
  return 2 * v * c + stacks + blocks;
}

struct BucketShape {
  int64_t experts, d_ff;
  bool gated;  // three matrices (wi_gate, wi_linear [C,F], wo [F,C]) instead of two (wi, wo)
};

int64_t expert_params(int64_t c, const std::vector<BucketShape>& buckets) {
  int64_t n = 0;
  for (const BucketShape& b : buckets)
    n += b.experts * ((b.gated ? 2 : 1) * c * b.d_ff + b.d_ff * c);
  return n;
}

// The paper's Table 7 2B model: two-matrix (GELU) experts in every bucket.
TEST(Describe, Base2bMatchesTable7) {
  ModelSize s = size_of("base_2b.textproto");
  const int64_t dense = dense_params(768, 768, 2048, 12, 4);
  const int64_t experts = expert_params(
      768, {{64, 2048, false}, {64, 2048, false}, {64, 2048, false}, {64 * 128, 96, false}});
  EXPECT_EQ(dense, 228703488);
  EXPECT_EQ(experts, 1811939328);
  EXPECT_EQ(s.dense_params, dense);
  EXPECT_EQ(s.expert_params, experts);
  EXPECT_EQ(s.total_params(), 2040642816);
  expect_about(s.dense_params, 228.7, 1e6, "dense without the 4 MoWE FFNs");
  expect_about(s.expert_params, 1.812, 1e9, "sparse");
  expect_about(s.total_params(), 2.04, 1e9, "total");
  for (const auto& b : s.buckets) EXPECT_EQ(b.activation, config::GELU);
  EXPECT_EQ(s.unreachable_expert_params, 0);  // 64 experts for 128, 880 and 1024 ids
  EXPECT_EQ(describe_report(s).find("never routed"), std::string::npos);
}

// MoWE-Base (Table 6, about 31B): gated-GELU experts in buckets 0-2, two-matrix GELU experts in
// the lookup-table bucket 3.
TEST(Describe, BaseMatchesTable6) {
  ModelSize s = size_of("base.textproto");
  const int64_t dense = dense_params(768, 768, 2048, 12, 4);
  const int64_t experts = expert_params(
      768,
      {{128, 2048, true}, {128 * 7, 2048, true}, {128 * 8, 1024, true}, {128 * 235, 512, false}});
  EXPECT_EQ(experts, 30903631872);
  EXPECT_EQ(s.dense_params, dense);
  EXPECT_EQ(s.expert_params, experts);
  EXPECT_EQ(s.total_params(), 31132335360);
  expect_about(s.total_params(), 31.13, 1e9, "total");
  ASSERT_EQ(s.buckets.size(), 4u);
  for (int b = 0; b < 3; ++b) EXPECT_EQ(s.buckets[b].activation, config::GATED_GELU) << b;
  EXPECT_EQ(s.buckets[3].activation, config::GELU);
  // Table 6's second bucket covers 880 ids with 128 x 7 = 896 experts: 16 gated experts of width
  // 2048 are never routed; the last bucket takes the 2^20 - 16 - 128 - 880 - 1024 other ids.
  const std::vector<int64_t> ids = {128, 880, 1024, 1046528}, unreachable = {0, 16, 0, 0};
  for (int b = 0; b < 4; ++b) {
    EXPECT_EQ(s.buckets[b].routing_ids, ids[b]) << b;
    EXPECT_EQ(s.buckets[b].unreachable_experts, unreachable[b]) << b;
  }
  EXPECT_EQ(s.buckets[1].unreachable_params, 75497472);
  EXPECT_EQ(s.unreachable_expert_params, expert_params(768, {{16, 2048, true}}));
  EXPECT_EQ(s.unreachable_expert_params, 75497472);
  const std::string report = describe_report(s);
  EXPECT_NE(report.find("16 of them never routed: 880 routing ids for 896 experts, 75497472 "
                        "parameters (75.50M) that never train"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("never routed                   75497472 (75.50M) of the expert total"),
            std::string::npos)
      << report;
  // Unshared experts: every one of the 4 MoWE layers holds its own 16 unreachable experts.
  EXPECT_EQ(size_of("base.textproto", {"model.mowe.share_expert_parameters=false"})
                .unreachable_expert_params,
            4 * 75497472);
  // The dense T5.1.1-Base model with all its FFNs is the well-known 247.6M.
  ModelSize full =
      size_of("base.textproto", {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"});
  EXPECT_EQ(full.dense_params, dense_params(768, 768, 2048, 12, 0));
  expect_about(full.dense_params, 247.6, 1e6, "T5.1.1-Base");
}

// MoWE-Large (Table 6, 45.5B sparse): the same per-bucket forms.
TEST(Describe, LargeMatchesTable6) {
  ModelSize s = size_of("large.textproto");
  const int64_t dense = dense_params(1024, 1024, 2816, 24, 4);
  const int64_t experts = expert_params(
      1024,
      {{128, 2816, true}, {128 * 7, 2816, true}, {128 * 8, 1536, true}, {128 * 235, 512, false}});
  EXPECT_EQ(dense, 748547072);
  EXPECT_EQ(experts, 45231374336);
  EXPECT_EQ(s.dense_params, dense);
  EXPECT_EQ(s.expert_params, experts);
  EXPECT_EQ(s.total_params(), 45979921408);
  EXPECT_EQ(s.unreachable_expert_params, expert_params(1024, {{16, 2816, true}}));
  EXPECT_EQ(s.unreachable_expert_params, 138412032);
  expect_about(s.expert_params, 45.23, 1e9, "sparse");
  expect_about(s.total_params(), 45.98, 1e9, "total");
  // The dense T5.1.1-Large model with all its FFNs: 783.2M.
  ModelSize full =
      size_of("large.textproto", {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"});
  EXPECT_EQ(full.dense_params, dense_params(1024, 1024, 2816, 24, 0));
  expect_about(full.dense_params, 783.2, 1e6, "T5.1.1-Large");
}

// Start-up warnings name the bucket, the exact count and cost, and the fix; none where every
// expert is reachable, or where no MoWE layer allocates the buckets.
TEST(Describe, UnreachableExpertsWarn) {
  auto warnings = [](const char* name, const std::vector<std::string>& overrides = {}) {
    return config_warnings(
        train::load_config(std::string(MOWE_SOURCE_DIR) + "/configs/" + name, overrides));
  };
  const std::vector<std::string> base = warnings("base.textproto");
  ASSERT_EQ(base.size(), 1u);
  EXPECT_EQ(base[0],
            "model.mowe.buckets[1] covers 880 routing ids with num_blocks (128) x "
            "experts_per_block (7) = 896 experts: 16 experts never receive a token (75497472 "
            "parameters allocated that never train); give the bucket at least 896 routing ids or "
            "fewer experts to use them all");
  const std::vector<std::string> large = warnings("large.textproto");
  ASSERT_EQ(large.size(), 1u);
  EXPECT_NE(large[0].find("(138412032 parameters"), std::string::npos) << large[0];
  EXPECT_TRUE(warnings("base_2b.textproto").empty());
  EXPECT_TRUE(warnings("base.textproto", {"model.mowe.buckets[1].num_routing_ids=896"}).empty());
  EXPECT_TRUE(
      warnings("base.textproto", {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"})
          .empty());
}

// The other readings of the paper's sizes, for the record in docs/mowe_layer.md: two-matrix
// experts everywhere, and gated everywhere.
TEST(Describe, OtherExpertFormReadings) {
  auto uniform = [](const char* config, const char* form) {
    std::vector<std::string> o = {std::string("model.mowe.expert_activation=") + form};
    for (int b = 0; b < 4; ++b)
      o.push_back(fmt::format("model.mowe.buckets[{}].expert_activation={}", b, form));
    return size_of(config, o);
  };
  EXPECT_EQ(uniform("base.textproto", "GELU").expert_params, 28487712768);
  EXPECT_EQ(uniform("base.textproto", "GELU").total_params(), 28716416256);
  EXPECT_EQ(uniform("large.textproto", "GELU").expert_params, 40667971584);
  EXPECT_EQ(uniform("large.textproto", "GELU").total_params(), 41416518656);
  EXPECT_EQ(uniform("base.textproto", "GATED_GELU").total_params(), 42960272640);
  EXPECT_EQ(uniform("large.textproto", "GATED_GELU").total_params(), 61750504448);
}

TEST(Describe, GatedExpertsNeedAThirdMatrix) {
  expect_about(
      size_of("base_2b.textproto", {"model.mowe.expert_activation=GATED_GELU"}).expert_params,
      2.718, 1e9, "gated 2B");
  // One bucket's own form overrides the layer's: bucket 3 of the 2B model gated adds one
  // [8192, 768, 96] matrix.
  EXPECT_EQ(size_of("base_2b.textproto", {"model.mowe.buckets[3].expert_activation=GATED_GELU"})
                    .expert_params -
                size_of("base_2b.textproto").expert_params,
            8192LL * 768 * 96);
}

// FLOPs from first principles for dense T5.1.1-Base (d 768, 12 x 64 heads, d_ff 2048, vocab
// 32128, 12 + 12 blocks) at 512 + 114 tokens: 2 per weight a token meets, 4 * inner per attended
// key; cross-attention K/V projections are paid once per encoder token, not per decoder token.
TEST(Describe, DenseFlopsPerToken) {
  ModelSize s =
      size_of("base.textproto", {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"});
  const int64_t d = 768, hd = 768, f = 2048, v = 32128, layers = 12, in = 512, out = 114;
  const int64_t attention = 2 * 4 * d * hd, ffn = 2 * 3 * d * f;
  const int64_t encoder = layers * (attention + 4 * hd * in + ffn) + layers * 2 * 2 * d * hd;
  const int64_t decoder =
      layers * (attention + 4 * hd * out + 2 * 2 * d * hd + 4 * hd * in + ffn) + 2 * d * v;
  EXPECT_EQ(s.encoder_flops_per_token, encoder);
  EXPECT_EQ(s.decoder_flops_per_token, decoder);
  EXPECT_EQ(s.dense_flops_per_sequence, in * encoder + out * decoder);
  // Without attention scores, forward FLOPs are twice the weights a sequence's tokens meet.
  const int64_t weights_per_sequence =
      in * (layers * (4 * d * hd + 3 * d * f) + layers * 2 * d * hd) +
      out * (layers * (4 * d * hd + 2 * d * hd + 3 * d * f) + d * v);
  const int64_t scores = in * layers * 4 * hd * in + out * layers * (4 * hd * out + 4 * hd * in);
  EXPECT_EQ(s.dense_flops_per_sequence, 2 * weights_per_sequence + scores);
}

TEST(Describe, UnsharedExpertsCountOncePerLayer) {
  ModelSize shared = size_of("base_2b.textproto");
  ModelSize unshared = size_of("base_2b.textproto", {"model.mowe.share_expert_parameters=false"});
  EXPECT_EQ(unshared.expert_params, 4 * shared.expert_params);
}

// The analytic counts equal what the tiny model allocates, with its MoWE layers (shared and
// unshared experts) and without them.
TEST(Describe, MatchesAllocatedTinyModel) {
  const std::string path = std::string(MOWE_SOURCE_DIR) + "/configs/tiny.textproto";
  for (const std::vector<std::string>& overrides :
       {std::vector<std::string>{},
        {"model.mowe.share_expert_parameters=false"},
        {"model.mowe.expert_activation=GATED_GELU"},
        {"model.mowe.buckets[1].expert_activation=GATED_GELU"},
        {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"}}) {
    auto cfg = train::load_config(path, overrides);
    const auto& m = cfg.model().mowe();
    std::vector<int64_t> freq(m.routing_vocab_size(), 1);
    const RoutingTable table = RoutingTable::build(m, freq);
    ParameterStore store(host_allocator(), DType::F32, 1);
    T5Model model(cfg.model(), store, &table);
    const ModelSize size = describe(cfg.model(), 32, 8);
    EXPECT_EQ(size.dense_params, store.count(ParamKind::Dense)) << overrides.size();
    EXPECT_EQ(size.expert_params, store.count(ParamKind::Expert)) << overrides.size();
  }
}

TEST(Describe, ReportNamesEveryComponent) {
  std::string r = describe_report(size_of("base.textproto"));
  for (const char* part : {"token embedding", "output projection", "encoder", "decoder", "bucket 3",
                           "expert total", "model total", "FLOPs"})
    EXPECT_NE(r.find(part), std::string::npos) << part << "\n" << r;
}

}  // namespace
}  // namespace mowe::model
