// Analytic parameter counts against the paper's figures (Tables 2, 6, 7; DESIGN.md) and against
// the tensors a model actually allocates.
#include "model/describe.h"

#include <gtest/gtest.h>

#include "model/t5_model.h"
#include "runtime/config/config.h"

namespace mowe::model {
namespace {

ModelSize size_of(const std::string& name, const std::vector<std::string>& overrides = {}) {
  auto cfg = config::load_config(std::string(MOWE_SOURCE_DIR) + "/configs/" + name, overrides);
  return describe(cfg.model(), 512, 114);
}

// Paper figures are rounded; each is checked to the precision it is quoted with.
void expect_about(int64_t value, double quoted, double unit, const char* what) {
  EXPECT_NEAR(value / unit, quoted, 0.0005 * quoted + 0.5e-3) << what << ": " << value;
}

TEST(Describe, Base2bMatchesTable7) {
  ModelSize s = size_of("base_2b.textproto");
  expect_about(s.dense_params, 228.7, 1e6, "dense without the 4 MoWE FFNs");
  EXPECT_EQ(s.expert_params, 1536LL * (3 * 64 * 2048 + 8192 * 96));  // 2 * d_model * sum E*F
  expect_about(s.expert_params, 1.812, 1e9, "sparse");
  expect_about(s.total_params(), 2.04, 1e9, "total");
}

TEST(Describe, BaseMatchesTable6) {
  ModelSize s = size_of("base.textproto");
  expect_about(s.expert_params, 28.488, 1e9, "sparse");
  expect_about(s.total_params(), 28.72, 1e9, "total");
  // The dense T5.1.1-Base model with all its FFNs is the well-known 247.6M.
  ModelSize dense =
      size_of("base.textproto", {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"});
  expect_about(dense.dense_params, 247.6, 1e6, "T5.1.1-Base");
}

TEST(Describe, GatedExpertsNeedAThirdMatrix) {
  expect_about(
      size_of("base_2b.textproto", {"model.mowe.expert_activation=GATED_GELU"}).expert_params,
      2.718, 1e9, "gated 2B");
  expect_about(size_of("base.textproto", {"model.mowe.expert_activation=GATED_GELU"}).expert_params,
               42.73, 1e9, "gated base");
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
        {"model.mowe.encoder_layers=[]", "model.mowe.decoder_layers=[]"}}) {
    auto cfg = config::load_config(path, overrides);
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
