// The memory estimate of one rank (model/memory_estimate.h) on configs small enough to count by
// hand, the refusal of a job beyond the available memory, and the refusal of sizes whose counts
// would overflow 64 bits.
#include "model/memory_estimate.h"

#include <gtest/gtest.h>

#include "launch/train/config_rules.h"
#include "model/describe.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "tests/util/expect_error.h"

namespace mowe::model {
namespace {

using mowe::testing::expect_error;

const MemoryTerm& term(const MemoryEstimate& e, const std::string& name) {
  for (const MemoryTerm& t : e.terms)
    if (t.name == name) return t;
  throw Error("no memory term " + name);
}

// C 4, H 2 x D 2 (HD 4), F 8, V 16, K 4 position buckets, one encoder and one decoder block, no
// MoWE layer; 2 sequences of 4 + 2 tokens on one rank; AdamW.
config::Config tiny_dense() {
  config::Config c;
  config::ModelConfig& m = *c.mutable_model();
  m.set_d_model(4), m.set_num_heads(2), m.set_d_kv(2), m.set_d_ff(8), m.set_vocab_size(16);
  m.set_relative_attention_num_buckets(4);
  m.set_num_encoder_layers(1), m.set_num_decoder_layers(1);
  c.mutable_data()->set_input_length(4);
  c.mutable_data()->set_target_length(2);
  c.mutable_training()->set_global_batch_size(2);
  c.mutable_training()->set_optimizer(config::TrainingConfig::ADAMW);
  return c;
}

TEST(MemoryEstimate, TinyDenseModelCountedByHand) {
  const MemoryEstimate e = estimate_memory(tiny_dense(), 1);
  EXPECT_EQ(e.local_batch, 2);
  // Parameters, in scalars: embedding and output projection 2 V C = 128; the blocks: position
  // bias 2 K H = 16, final norms 2 C = 8, three attentions (encoder self, decoder self and
  // cross) 3 (4 C HD + C) = 204, two feed-forward blocks 2 (3 C F + C) = 200: 428.
  EXPECT_EQ(term(e, "token embedding and output projection").parameters, 128 * 4);
  EXPECT_EQ(term(e, "dense blocks").parameters, 428 * 4);
  // The same dense count as --describe's.
  EXPECT_EQ(describe(tiny_dense().model(), 4, 2).dense_params, 128 + 428);
  // AdamW: a gradient and two moments per parameter.
  EXPECT_EQ(e.gradients(), 556 * 4);
  EXPECT_EQ(e.optimizer_state(), 2 * 556 * 4);
  // Every dense gradient is smaller than a 25 MiB bucket: all staged.
  EXPECT_EQ(e.staging(), 556 * 4);
  // Activations, b = 2, Ne = 8 encoder and Nd = 4 decoder tokens:
  //   logits 2 Nd V + 2 Nd = 136;
  //   scores b H (T^2 + S^2 + S T) + 2 H (T^2 + S^2) = 112 + 80 = 192;
  //   other: encoder 32 (embedding) + 200 (attention: 25 per token) + 264 (feed-forward: 33 per
  //   token) + 40 (final norm) = 536; decoder 16 + 100 + 132 + 132 (cross-attention) + 20 = 400;
  //   gradients kept by the backward pass 96; scratch: the encoder feed-forward's backward
  //   Ne (3 C + 3 F) = 288. 1320 in all.
  EXPECT_EQ(term(e, "output logits").activations, 136 * 4);
  EXPECT_EQ(term(e, "attention scores").activations, 192 * 4);
  EXPECT_EQ(term(e, "other activations").activations, 1320 * 4);
  EXPECT_EQ(e.total(), (4 * 556 + 556 + 136 + 192 + 1320) * 4);
  EXPECT_EQ(e.total(), 17712);
  // No MoWE layer: no expert term.
  for (const MemoryTerm& t : e.terms) EXPECT_NE(t.name, "experts on this rank");
}

TEST(MemoryEstimate, ExpertShareFollowsTheWorldSizeAndAdafactorFactors) {
  config::Config c = tiny_dense();
  c.mutable_training()->set_optimizer(config::TrainingConfig::ADAFACTOR);
  config::MoweConfig& w = *c.mutable_model()->mutable_mowe();
  w.add_encoder_layers(0);
  w.set_expert_activation(config::GATED_GELU);
  config::BucketConfig* b = w.add_buckets();
  b->set_num_blocks(8), b->set_experts_per_block(3), b->set_expert_d_ff(5);
  // 4 ranks: 2 blocks of 3 experts each; gated: two [6, 4, 5] inputs and one [6, 5, 4] output,
  // 360 scalars, as many gradients, and Adafactor's factored 6 x (4 + 5) per tensor plus the
  // f64 log-decay of each of the 6 experts (2 scalars each).
  const MemoryTerm at4 = term(estimate_memory(c, 4), "experts on this rank");
  EXPECT_EQ(at4.parameters, 360 * 4);
  EXPECT_EQ(at4.gradients, 360 * 4);
  EXPECT_EQ(at4.optimizer, 3 * (54 + 12) * 4);
  EXPECT_NE(at4.drivers.find("model.mowe.buckets[0]: 6 of its 24 experts per rank x expert_d_ff 5"),
            std::string::npos)
      << at4.drivers;
  // 16 ranks over 8 blocks: one block each (replicated twice).
  EXPECT_EQ(term(estimate_memory(c, 16), "experts on this rank").parameters, 180 * 4);
  // Frozen experts: no gradient, no state.
  w.set_freeze_experts(true);
  const MemoryTerm frozen = term(estimate_memory(c, 4), "experts on this rank");
  EXPECT_EQ(frozen.gradients + frozen.optimizer, 0);
  // One MoWE layer per stack without sharing: two sets.
  w.set_freeze_experts(false);
  w.add_decoder_layers(0);
  w.set_share_expert_parameters(false);
  EXPECT_EQ(term(estimate_memory(c, 4), "experts on this rank").parameters, 2 * 360 * 4);
  // A matrix with both sides >= 128 keeps rows + columns: the [256, 128] embedding.
  c.mutable_model()->set_vocab_size(256);
  c.mutable_model()->set_d_model(128);
  EXPECT_EQ(term(estimate_memory(c, 1), "token embedding and output projection").optimizer,
            2 * (256 + 128) * 4);
  // The batch splits over the ranks, rounded up.
  c.mutable_training()->set_global_batch_size(10);
  EXPECT_EQ(estimate_memory(c, 4).local_batch, 3);
}

TEST(MemoryEstimate, ReportNamesEveryTermAndTheTotal) {
  const std::string r = memory_report(estimate_memory(tiny_dense(), 1));
  EXPECT_NE(r.find("memory per rank at 1 rank (estimate: float32, adamw, 2 sequences of 4 + 2 "
                   "tokens per rank)"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find("token embedding and output projection"), std::string::npos) << r;
  EXPECT_NE(r.find("(model.vocab_size = 16 x model.d_model = 4)"), std::string::npos) << r;
  EXPECT_NE(r.find("17.3 KiB"), std::string::npos) << r;  // 17712 bytes
  EXPECT_EQ(format_bytes(17712), "17.3 KiB");
  EXPECT_EQ(format_bytes(512), "512 bytes");
  EXPECT_EQ(format_bytes(3.5 * (1 << 30)), "3.50 GiB");
}

TEST(MemoryEstimate, RefusalNamesTheEstimateTheFieldsAndWhatIsAvailable) {
  // One sequence per step: the parameters lead.
  config::Config c = train::load_config_text(
      "", "test", {"model.d_model=1000000", "training.global_batch_size=1"});
  const MemoryEstimate e = estimate_memory(c, 1);
  EXPECT_NO_THROW(check_memory_fits(e, {e.total(), "test"}, 1));
  expect_error(
      [&] {
        check_memory_fits(e, {16.0 * (1 << 30), "MemAvailable in /proc/meminfo"}, 2);
      },
      {"this job needs about " + format_bytes(e.total()) +
           " per rank at 1 rank, but 8.00 GiB "
           "is available to each of the 2 ranks on this host (16.0 GiB MemAvailable in "
           "/proc/meminfo): ",
       "dense blocks ", "(model.d_model = 1000000, model.d_ff = 2048",
       "token embedding and output projection ",
       "(model.vocab_size = 32128 x model.d_model = "
       "1000000)",
       "reduce these fields, or spread the experts and the batch over more ranks"});
  // A huge batch: the activations lead.
  c = train::load_config_text("", "test", {"training.global_batch_size=1000000"});
  expect_error(
      [&] {
        check_memory_fits(estimate_memory(c, 4), {1e9, "test"}, 1);
      },
      {"per rank at 4 ranks, but 954 MiB is available on this host (954 MiB test): "
       "other activations ",
       "; attention scores ",
       "(250000 sequences per rank (training.global_batch_size = 1000000 over 4 ranks) "
       "x model.num_heads 12 x data.input_length 512 squared"});
}

TEST(MemoryEstimate, HostMemoryIsKnown) {
  const HostMemory host = available_host_memory();
  EXPECT_GT(host.available_bytes, 0);
  EXPECT_FALSE(host.source.empty());
}

// --describe and every program load configs through validation, which refuses counts that would
// wrap, naming the fields (was: negative parameter counts).
TEST(ModelSizeLimits, CountsThatWouldOverflowAreRefused) {
  expect_error(
      [] {
        train::load_config_text("", "test",
                                {"model.vocab_size=2000000000", "model.d_model=2000000000"});
      },
      {"--set model.vocab_size=2000000000: model.vocab_size = 2000000000 x model.d_model = "
       "2000000000 gives 8e+18 embedding and output parameters, beyond any machine and 64-bit "
       "counts"});
  expect_error(
      [] {
        train::load_config_text("", "test", {"model.d_model=2000000000", "model.d_ff=2000000000"});
      },
      {"model.d_model = 2000000000 with model.d_ff = 2000000000 and model.num_heads x "
       "model.d_kv = 768 over 24 blocks gives 2.88e+20 parameters"});
  expect_error(
      [] {
        train::load_config_text("", "test",
                                {"model.d_model=1073741824", "model.vocab_size=16777216"});
      },
      {"FLOPs per sequence, beyond 64-bit counts"});
  // The paper's largest configurations stay well inside.
  EXPECT_NO_THROW(train::load_config_text("", "test", {"model.d_model=4096", "model.d_ff=16384"}));
}

}  // namespace
}  // namespace mowe::model
