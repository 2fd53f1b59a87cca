// The tiny MoWE model against an independent PyTorch implementation
// (tests/reference/t5_mowe_reference.py, output committed as tiny_reference.bin): logits, loss
// and every parameter gradient, in double precision. This checks what finite differences
// cannot: that the forward pass is T5.1.1's and MoWE's (relative position buckets, RMSNorm,
// gated GELU, no attention scaling, shared input embedding, experts chosen by routing id).
#include <gtest/gtest.h>

#include <cmath>

#include "launch/train/config_rules.h"
#include "model/t5_model.h"
#include "runtime/config/config.h"
#include "tests/util/gradcheck.h"
#include "tests/util/reference_file.h"

namespace mowe::model {
namespace {

using testing::get;

const std::string kSource = MOWE_SOURCE_DIR;

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(get(t, i)));
  return m;
}

// |a - b| <= tol * max(1, max|b|) element-wise, reporting the worst element.
void expect_close(const std::string& what, const Tensor& actual, const Tensor& expected,
                  double tol) {
  ASSERT_EQ(actual.numel(), expected.numel()) << what;
  const double scale = std::max(1.0, max_abs(expected));
  double worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const double d = std::abs(get(actual, i) - get(expected, i));
    if (d > worst) worst = d, at = i;
  }
  EXPECT_LE(worst, tol * scale) << what << "[" << at << "]: " << get(actual, at) << " vs "
                                << get(expected, at);
}

RoutingTable table_from(const testing::ReferenceFile& ref, const config::MoweConfig& m) {
  const Tensor& bucket = ref.at("routing.bucket_of");
  const Tensor& expert = ref.at("routing.expert_of");
  std::vector<int32_t> b(bucket.ptr<int32_t>(), bucket.ptr<int32_t>() + bucket.numel());
  std::vector<int32_t> e(expert.ptr<int32_t>(), expert.ptr<int32_t>() + expert.numel());
  std::vector<BucketLayout> layouts;
  std::vector<std::vector<int64_t>> loads;
  for (int k = 0; k < m.buckets_size(); ++k) {
    const auto& c = m.buckets(k);
    layouts.push_back({std::count(b.begin(), b.end(), k), c.num_blocks(), c.experts_per_block(),
                       c.expert_d_ff()});
    loads.emplace_back(layouts.back().num_experts(), 0);
  }
  return RoutingTable(layouts, b, e, loads);
}

TEST(Reference, TinyModelMatchesPyTorch) {
  const auto ref = testing::read_reference_file(kSource + "/tests/reference/tiny_reference.bin");
  ASSERT_EQ(ref.version, 1u);
  const config::Config cfg = train::load_config(kSource + "/configs/tiny.textproto");
  const config::ModelConfig& c = cfg.model();
  const std::vector<int64_t> dims = {c.d_model(),
                                     c.num_heads(),
                                     c.d_kv(),
                                     c.d_ff(),
                                     c.num_encoder_layers(),
                                     c.num_decoder_layers(),
                                     c.vocab_size(),
                                     c.relative_attention_num_buckets(),
                                     c.relative_attention_max_distance(),
                                     c.mowe().routing_vocab_size()};
  for (size_t i = 0; i < dims.size(); ++i)
    ASSERT_EQ(get(ref.at("meta.dims"), i), dims[i]) << "reference built for another tiny config";

  const RoutingTable table = table_from(ref, c.mowe());
  ParameterStore store(host_allocator(), DType::F64, 1);
  T5Model model(c, store, &table);
  int64_t matched = 0;
  for (const auto& p : store.all()) {
    const Tensor& src = ref.at("param." + p->name);
    ASSERT_EQ(src.numel(), p->value.tensor().numel()) << p->name;
    std::copy_n(src.ptr<double>(), src.numel(), p->value.tensor().ptr<double>());
    ++matched;
  }
  int64_t in_file = 0;
  for (const auto& [name, t] : ref.tensors) in_file += name.rfind("param.", 0) == 0;
  EXPECT_EQ(matched, in_file) << "the reference has parameters the model does not";

  ModelInputs in;
  in.batch = ref.at("input.enc_ids").dim(0);
  in.enc_ids = ref.at("input.enc_ids");
  in.enc_valid = ref.at("input.enc_valid");
  in.enc_routing = ref.at("input.enc_routing");
  in.dec_ids = ref.at("input.dec_ids");
  in.dec_valid = ref.at("input.dec_valid");
  in.dec_routing = ref.at("input.dec_routing");
  in.targets = ref.at("input.targets");
  in.weights = ref.at("input.weights");
  const double z_loss = get(ref.at("meta.z_loss"), 0);

  Arena scratch(host_allocator()), acts(host_allocator());
  StepContext s;
  s.backend = &cpu_backend();
  s.ctx.scratch = &scratch;
  s.activations = &acts;
  store.zero_grads();
  const double loss = model.forward(s, in, z_loss);
  model.backward(s, in, z_loss, 1.0);

  EXPECT_NEAR(loss, get(ref.at("output.loss"), 0), 1e-11 * std::abs(loss));
  expect_close("logits", model.logits(), ref.at("output.logits"), 1e-11);
  for (const auto& p : store.all())
    expect_close("grad " + p->name, p->grad.tensor(), ref.at("grad." + p->name), 1e-10);
}

}  // namespace
}  // namespace mowe::model
