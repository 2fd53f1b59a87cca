// Learning, end to end on one process: a small MoWE model trained with AdamW memorises a handful
// of fixed span-corruption examples (T5's preprocessing, data/span_corruption.h) until the mean
// token loss is below 0.05, within a bounded number of steps.
#include <gtest/gtest.h>

#include <random>

#include "data/span_corruption.h"
#include "model/t5_model.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

constexpr int kVocab = 48, kExamples = 4, kRawLength = 24;
constexpr int32_t kPad = 0, kEos = 1, kFirstSentinel = 2, kNumSentinels = 8;

config::ModelConfig overfit_config() {
  config::ModelConfig c;
  c.set_d_model(32);
  c.set_num_heads(4);
  c.set_d_kv(8);
  c.set_d_ff(64);
  c.set_num_encoder_layers(2);
  c.set_num_decoder_layers(2);
  c.set_vocab_size(kVocab);
  c.set_relative_attention_num_buckets(8);
  c.set_relative_attention_max_distance(16);
  auto* m = c.mutable_mowe();
  m->add_encoder_layers(1);
  m->add_decoder_layers(1);
  m->set_routing_vocab_size(kVocab);
  m->set_num_unrouted_ids(2);
  auto* b = m->add_buckets();
  b->set_num_routing_ids(0);  // all the rest
  b->set_num_blocks(2);
  b->set_experts_per_block(8);
  b->set_expert_d_ff(16);
  return c;
}

// Token rows padded to `len`, with their validity mask.
void pad_into(const std::vector<int32_t>& seq, int64_t len, std::vector<int32_t>* ids,
              std::vector<int32_t>* valid) {
  for (int64_t t = 0; t < len; ++t) {
    ids->push_back(t < static_cast<int64_t>(seq.size()) ? seq[t] : kPad);
    valid->push_back(t < static_cast<int64_t>(seq.size()) ? 1 : 0);
  }
}

struct Examples {
  std::vector<Buffer> buffers;
  ModelInputs in;
  int64_t target_tokens = 0;
};

Examples make_examples() {
  std::vector<int32_t> sentinels;
  for (int k = 0; k < kNumSentinels; ++k) sentinels.push_back(kFirstSentinel + k);
  std::vector<std::vector<int32_t>> inputs(kExamples), targets(kExamples);
  std::mt19937 rng(3);
  size_t enc_len = 0, dec_len = 0;
  for (int e = 0; e < kExamples; ++e) {
    std::vector<int32_t> raw(kRawLength);
    for (int32_t& t : raw) t = kFirstSentinel + kNumSentinels + rng() % (kVocab - 10);
    auto mask = data::random_spans_noise_mask(kRawLength, 0.15, 3.0, 100 + e);
    data::apply_noise_mask(raw.data(), mask.data(), kRawLength, sentinels, kEos, &inputs[e],
                           &targets[e]);
    enc_len = std::max(enc_len, inputs[e].size());
    dec_len = std::max(dec_len, targets[e].size());
  }
  std::vector<int32_t> enc, enc_valid, dec, dec_valid, tgt, tgt_valid;
  for (int e = 0; e < kExamples; ++e) {
    std::vector<int32_t> shifted = {kPad};  // decoder inputs: targets shifted right
    shifted.insert(shifted.end(), targets[e].begin(), targets[e].end() - 1);
    pad_into(inputs[e], enc_len, &enc, &enc_valid);
    pad_into(shifted, dec_len, &dec, &dec_valid);
    pad_into(targets[e], dec_len, &tgt, &tgt_valid);
  }
  Examples x;
  auto keep = [&](const std::vector<int32_t>& v, int64_t len) {
    x.buffers.push_back(testing::ids_buffer(v));
    return x.buffers.back().tensor().reshape({kExamples, len});
  };
  const int64_t el = static_cast<int64_t>(enc_len), dl = static_cast<int64_t>(dec_len);
  x.in.batch = kExamples;
  x.in.enc_ids = keep(enc, el);
  x.in.enc_valid = keep(enc_valid, el);
  x.in.enc_routing = x.in.enc_ids;  // routing id = token id: the default pieces
  x.in.dec_ids = keep(dec, dl);
  x.in.dec_valid = keep(dec_valid, dl);
  x.in.dec_routing = x.in.dec_ids;
  x.in.targets = keep(tgt, dl);
  x.buffers.push_back(testing::host_buffer({kExamples, dl}, DType::F32));
  x.in.weights = x.buffers.back().tensor();
  for (int64_t i = 0; i < kExamples * dl; ++i) {
    testing::set(x.in.weights, i, tgt_valid[i]);
    x.target_tokens += tgt_valid[i];
  }
  return x;
}

TEST(Overfit, MemorisesFixedSpanCorruptionExamples) {
  const config::ModelConfig c = overfit_config();
  std::vector<int64_t> freq(kVocab);
  for (int i = 0; i < kVocab; ++i) freq[i] = kVocab - i;
  const RoutingTable table = RoutingTable::build(c.mowe(), freq);
  ParameterStore store(host_allocator(), DType::F32, 11);
  T5Model model(c, store, &table);
  AdamW adamw(host_allocator(), {.weight_decay = 0.0});
  Examples x = make_examples();
  Arena scratch(host_allocator()), acts(host_allocator());
  StepContext s;
  s.backend = &cpu_backend();
  s.ctx.scratch = &scratch;
  s.activations = &acts;
  const std::vector<ParamSlot> slots = store.slots();
  const double scale = 1.0 / static_cast<double>(x.target_tokens);

  double first = 0, loss = 1e9;
  int step = 0;
  for (; step < 400 && loss >= 0.05; ++step) {
    ArenaScope scope(acts);
    store.zero_grads();
    loss = model.forward(s, x.in, 1e-4) * scale;
    if (step == 0) first = loss;
    model.backward(s, x.in, 1e-4, scale);
    adamw.step(s.ctx, slots, 3e-3, 1.0, step + 1);
  }
  EXPECT_LT(loss, 0.05) << "after " << step << " steps, from " << first;
  EXPECT_GT(first, 3.0) << "an untrained model is near ln(48) = 3.9 per token";
  ::testing::Test::RecordProperty("steps", step);
}

}  // namespace
}  // namespace mowe::model
