#include "model/dispatch_plan_file.h"

#include <cmath>

#include "data/derived_file.h"
#include "data/span_corruption.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/hash.h"

namespace mowe::model {

uint64_t routing_vocab_hash(const data::RoutingVocabFile& f) {
  uint64_t h = hash_ints(0x766f636162756c61ULL, f.tokenizer_hash(), f.default_vocab_size(),
                         f.case_variants(), f.entries_size());
  for (const data::RoutingEntry& e : f.entries()) {
    h = hash_ints(h, e.tokens_size());
    for (int32_t t : e.tokens()) h = hash_ints(h, t);
  }
  h = hash_ints(h, f.variant_keys_size());
  for (const data::RoutingKey& k : f.variant_keys()) {
    h = hash_ints(h, k.routing_id(), k.tokens_size());
    for (int32_t t : k.tokens()) h = hash_ints(h, t);
  }
  h = hash_ints(h, f.frequency_size());
  for (int64_t c : f.frequency()) h = hash_ints(h, c);
  return h;
}

std::vector<int64_t> zipf_frequencies(int64_t vocab_size, double exponent) {
  MOWE_CHECK(exponent >= 0, "the Zipf exponent must be >= 0, not {}", exponent);
  std::vector<int64_t> f(vocab_size);
  for (int64_t i = 0; i < vocab_size; ++i)
    f[i] = std::llround(1e12 / std::pow(static_cast<double>(i + 1), exponent));
  return f;
}

uint64_t zipf_vocab_hash(int64_t vocab_size, double exponent) {
  return hash_ints(0x7a697066ULL, vocab_size, std::llround(exponent * 1e6));
}

StepTokens step_tokens(const config::Config& config) {
  const config::DataConfig& d = config.data();
  int64_t target = d.target_length();
  if (target == 0)
    target = data::t5_span_lengths(d.input_length(), d.noise_density(), d.mean_noise_span_length())
                 .targets_length;
  const int64_t batch = config.training().global_batch_size();
  return {batch * d.input_length(), batch * target};
}

std::vector<int64_t> padded_frequencies(const data::RoutingVocab& vocab, const std::string& path,
                                        int64_t routing_vocab_size) {
  std::vector<int64_t> f = vocab.frequencies();
  if (f.empty())
    throw UserError(fmt::format(
        "routing vocabulary {} holds no frequencies: rebuild it with mowe_vocab", path));
  if (static_cast<int64_t>(f.size()) > routing_vocab_size)
    throw UserError(fmt::format(
        "routing vocabulary {} has {} routing ids, more than model.mowe.routing_vocab_size = {}: "
        "rebuild it with mowe_vocab for this config",
        path, f.size(), routing_vocab_size));
  f.resize(routing_vocab_size, 0);  // ids with no word: never seen, zero frequency
  return f;
}

PlanInputs plan_inputs(const config::Config& config, const std::string& config_path,
                       const data::RoutingVocab& vocab, int world_size) {
  const std::string& path = config.data().routing_vocab();
  PlanInputs in;
  in.world_size = world_size;
  in.frequencies = padded_frequencies(vocab, path, config.model().mowe().routing_vocab_size());
  const StepTokens tokens = step_tokens(config);
  in.encoder_tokens_per_step = tokens.encoder;
  in.decoder_tokens_per_step = tokens.decoder;
  in.vocab_hash = routing_vocab_hash(vocab);
  in.frequency_source =
      fmt::format("routing vocabulary {}, {} ids", path, vocab.frequencies().size());
  in.config_path = config_path;
  return in;
}

namespace {

constexpr data::DerivedFile kPlanFile{"dispatch plan", kPlanMagic, DispatchPlan::kFormatVersion,
                                      "parallel.plan"};

std::string plan_command(const std::string& path, int world_size) {
  return config::command_for_this_config(
      "mowe_plan", fmt::format("--world-size {} --out {}",
                               world_size > 0 ? std::to_string(world_size) : "<ranks>",
                               config::shell_quote(path)));
}

}  // namespace

void save_plan(const DispatchPlan& plan, const std::string& path) {
  std::string bytes;
  MOWE_CHECK(plan.to_proto().SerializeToString(&bytes), "cannot serialize the dispatch plan");
  data::write_derived_file(kPlanFile, path, bytes);
}

DispatchPlan load_plan(const std::string& path, int world_size) {
  const std::string rebuild = plan_command(path, world_size);
  const std::string payload = data::read_derived_file(kPlanFile, path, rebuild);
  DispatchPlanFile file;
  if (!file.ParseFromString(payload))
    throw UserError(data::derived_file_problem(kPlanFile, path,
                                               "passes its checksum but does not parse", rebuild));
  return DispatchPlan::from_proto(file, path);
}

DispatchPlan load_plan(const std::string& path, int world_size, uint64_t vocab_hash,
                       uint64_t bucket_config_hash) {
  DispatchPlan plan = load_plan(path, world_size);
  plan.check(world_size, vocab_hash, bucket_config_hash);
  return plan;
}

DispatchPlan load_plan_for(const config::Config& config, const data::RoutingVocab& vocab,
                           int world_size) {
  const std::string& path = config.parallel().plan();
  if (path.empty())
    throw UserError("parallel.plan is empty: set where mowe_plan writes the dispatch plan");
  return load_plan(path, world_size, routing_vocab_hash(vocab),
                   bucket_config_hash(config.model().mowe()));
}

}  // namespace mowe::model
