// mowe_plan: the dispatch plan of a config for a world size (docs/dispatch_plans.md).
//
//   build/bin/mowe_plan --config configs/wordnet_small.textproto --world-size 4
//   build/bin/mowe_plan --config configs/base.textproto --simulate --zipf 1 --world-size 64,1024
//   build/bin/mowe_plan --config configs/wordnet_small.textproto --check --world-size 4
//
// Reads the routing vocabulary with its frequencies (data.routing_vocab) and model.mowe, builds
// the routing table and the block ownership for the world size, and writes parallel.plan (or
// --out) atomically. --simulate prints the expected load imbalance and all-to-all traffic of
// any world size without writing anything; --check verifies a plan as the trainer does.
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>

#include "data/routing_vocab.h"
#include "launch/train/config_rules.h"
#include "model/dispatch_plan_file.h"
#include "model/dispatch_plan_stats.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/log.h"

namespace {

namespace model = mowe::model;
using mowe::Error;

const char* kUsage =
    R"(--config PATH --world-size N [--out PATH] [--contiguous] [--set FIELD=VALUE ...]
       mowe_plan --config PATH --simulate [--world-size N[,N...]] [--zipf S] [--ranks-per-node L]
       mowe_plan --config PATH --check --world-size N [--out PATH]

Builds the dispatch plan of a config for a world size from the routing vocabulary
(data.routing_vocab, with its frequencies) and model.mowe, and writes it to parallel.plan.
  --world-size N       Ranks of the job (required to write or check a plan). With --simulate, a
                       comma-separated list (default: the powers of two up to 1024 that the
                       bucket layout can serve).
  --out PATH           Where the plan is written or checked (default: parallel.plan).
  --contiguous         Give each rank one contiguous range of blocks per bucket instead of
                       balancing the expected token load over the ranks.
  --simulate           Print, per world size, the expected tokens per rank and bucket, their
                       max/mean, and the all-to-all volume and messages per step; write nothing.
  --zipf S             With --simulate: synthetic Zipf(S) frequencies over the routing ids
                       instead of the routing vocabulary, for configs whose data does not exist.
  --ranks-per-node L   Ranks per node for the hierarchical all-to-all's message count
                       (default: parallel.ranks_per_node, or 8 when that is 0).
  --check              Load the plan and check it against this config, its routing vocabulary
                       and --world-size, as the trainer does.
)";

int parse_int(const std::string& text, const std::string& flag) {
  const int64_t value = mowe::config::parse_int_flag(text, flag, 1);
  if (value > std::numeric_limits<int>::max())
    throw Error(fmt::format("{} expects an integer of at most {}, not '{}'", flag,
                            std::numeric_limits<int>::max(), text));
  return static_cast<int>(value);
}

std::vector<int> parse_world_sizes(const std::string& text) {
  std::vector<int> sizes;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    sizes.push_back(parse_int(text.substr(begin, end - begin), "--world-size"));
    begin = end + 1;
  }
  return sizes;
}

// Plan inputs without the world size: from the routing vocabulary, or synthetic with --zipf.
model::PlanInputs base_inputs(const mowe::config::Config& config,
                              const mowe::config::CommonFlags& flags) {
  const auto& mowe_config = config.model().mowe();
  if (flags.values.count("--zipf")) {
    if (!flags.has("--simulate"))
      throw Error(
          "--zipf is only for --simulate: a plan file must be built from the routing vocabulary "
          "the trainer will use");
    const double s = mowe::config::parse_double_flag(flags.values.at("--zipf"), "--zipf", 0.0);
    const int64_t v = mowe_config.routing_vocab_size();
    model::PlanInputs in;
    in.frequencies = model::zipf_frequencies(v, s);
    in.vocab_hash = model::zipf_vocab_hash(v, s);
    in.frequency_source = fmt::format(
        "SYNTHETIC Zipf({:.2f}) over {} routing ids (--zipf; no routing vocabulary was read): "
        "routing id i has frequency proportional to 1/(i+1)^{:.2f}",
        s, v, s);
    const model::StepTokens tokens = model::step_tokens(config);
    in.encoder_tokens_per_step = tokens.encoder;
    in.decoder_tokens_per_step = tokens.decoder;
    in.config_path = flags.config_path;
    return in;
  }
  const std::string& path = config.data().routing_vocab();
  if (path.empty() || !std::filesystem::exists(path))
    throw Error(fmt::format(
        "routing vocabulary '{}' (data.routing_vocab) does not exist: build it with mowe_vocab "
        "--config {}, or estimate with mowe_plan --simulate --zipf 1",
        path, flags.config_path));
  spdlog::info("[plan] reading routing vocabulary {}", path);
  const mowe::data::RoutingVocab vocab = mowe::data::RoutingVocab::load(path);
  return model::plan_inputs(config, flags.config_path, vocab, 1);
}

model::PlanInputs with_world_size(const model::PlanInputs& base, int world_size,
                                  model::BlockAssignment assignment) {
  model::PlanInputs in = base;
  in.world_size = world_size;
  in.assignment = assignment;
  return in;
}

// The loader splits the global batch evenly: say so when this world size cannot.
void print_batch_note(const mowe::config::Config& config, int world_size) {
  const int batch = config.training().global_batch_size();
  if (batch % world_size != 0)
    fmt::print(
        "  note: training.global_batch_size = {} is not a multiple of {}: the trainer refuses this "
        "world size unless the batch changes\n",
        batch, world_size);
}

int simulate(const mowe::config::Config& config, const model::PlanInputs& base,
             const mowe::config::CommonFlags& flags, const model::TrafficOptions& traffic) {
  const auto& mowe_config = config.model().mowe();
  std::vector<int> sizes;
  if (flags.values.count("--world-size")) {
    sizes = parse_world_sizes(flags.values.at("--world-size"));
  } else {
    for (int n = 1; n <= 1024; n *= 2)
      if (model::world_size_refusal(mowe_config, n).empty()) sizes.push_back(n);
  }
  const auto assignment = flags.has("--contiguous") ? model::BlockAssignment::kContiguous
                                                    : model::BlockAssignment::kBalanced;
  bool refused = false, header = false;
  fmt::print("mowe_plan --simulate: {}\n", flags.config_path);
  for (int n : sizes) {
    const std::string refusal = model::world_size_refusal(mowe_config, n);
    if (!refusal.empty()) {
      fmt::print("\nworld size {}: refused: {}\n", n, refusal);
      refused = true;
      continue;
    }
    const auto plan = model::DispatchPlan::build(mowe_config, with_world_size(base, n, assignment));
    if (!header) fmt::print("{}", model::format_plan_header(plan));
    header = true;
    std::optional<model::DispatchPlan> contiguous;
    if (assignment == model::BlockAssignment::kBalanced)
      contiguous = model::DispatchPlan::build(
          mowe_config, with_world_size(base, n, model::BlockAssignment::kContiguous));
    fmt::print("\n{}",
               model::format_plan_table(plan, traffic, contiguous ? &*contiguous : nullptr));
    print_batch_note(config, n);
  }
  return refused ? 2 : 0;
}

int check(const mowe::config::Config& config, const mowe::config::CommonFlags& flags,
          const std::string& path, int world_size, const model::TrafficOptions& traffic) {
  const mowe::data::RoutingVocab vocab =
      mowe::data::RoutingVocab::load(config.data().routing_vocab());
  const model::DispatchPlan plan =
      model::load_plan(path, world_size, model::routing_vocab_hash(vocab),
                       model::bucket_config_hash(config.model().mowe()));
  fmt::print(
      "dispatch plan {} matches {}: {} ranks, routing vocabulary hash {:016x}, bucket "
      "configuration hash {:016x}\n{}\n{}",
      path, flags.config_path, plan.world_size(), plan.vocab_hash(), plan.bucket_config_hash(),
      model::format_plan_header(plan), model::format_plan_table(plan, traffic));
  return 0;
}

int write(const mowe::config::Config& config, const model::PlanInputs& base,
          const mowe::config::CommonFlags& flags, const std::string& path, int world_size,
          const model::TrafficOptions& traffic) {
  const auto assignment = flags.has("--contiguous") ? model::BlockAssignment::kContiguous
                                                    : model::BlockAssignment::kBalanced;
  spdlog::info("[plan] building the plan for {} ranks", world_size);
  const auto plan = model::DispatchPlan::build(config.model().mowe(),
                                               with_world_size(base, world_size, assignment));
  model::save_plan(plan, path);
  spdlog::info("[plan] wrote {}", path);
  fmt::print("dispatch plan {} ({:.1f} MB) for {} ranks, from {}\n", path,
             std::filesystem::file_size(path) / 1e6, world_size, flags.config_path);
  fmt::print("  routing vocabulary hash {:016x}, bucket configuration hash {:016x}\n{}\n{}",
             plan.vocab_hash(), plan.bucket_config_hash(), model::format_plan_header(plan),
             model::format_plan_table(plan, traffic));
  print_batch_note(config, world_size);
  return 0;
}

int run(int argc, char** argv) {
  auto flags =
      mowe::config::parse_common_flags(argc, argv, {"--simulate", "--contiguous", "--check"},
                                       {"--world-size", "--out", "--zipf", "--ranks-per-node"});
  if (flags.help) {
    std::cout << mowe::config::help_text("mowe_plan", kUsage);
    return 0;
  }
  mowe::log::init({.all_ranks = flags.log_all_ranks, .level = flags.log_level});
  if (!flags.positional.empty())
    throw Error("unexpected argument '" + flags.positional[0] + "' (run with --help)");
  if (flags.config_path.empty()) throw Error("--config FILE is required (see --help)");
  const auto config = mowe::train::load_config(flags.config_path, flags.overrides);
  int per_node = config.parallel().ranks_per_node() > 0 ? config.parallel().ranks_per_node() : 8;
  if (flags.values.count("--ranks-per-node"))
    per_node = parse_int(flags.values.at("--ranks-per-node"), "--ranks-per-node");
  if (per_node < 1) throw Error("--ranks-per-node must be at least 1");
  const model::TrafficOptions traffic = model::traffic_options(config, per_node);

  if (flags.has("--simulate")) return simulate(config, base_inputs(config, flags), flags, traffic);
  if (!flags.values.count("--world-size"))
    throw Error("--world-size N is required: the number of ranks the plan is for (see --help)");
  const int world_size = parse_int(flags.values.at("--world-size"), "--world-size");
  const std::string path =
      flags.values.count("--out") ? flags.values.at("--out") : config.parallel().plan();
  if (path.empty()) throw Error("parallel.plan is empty and no --out PATH was given");
  if (flags.has("--check")) return check(config, flags, path, world_size, traffic);
  const std::string refusal = model::world_size_refusal(config.model().mowe(), world_size);
  if (!refusal.empty()) throw Error(refusal);
  return write(config, base_inputs(config, flags), flags, path, world_size, traffic);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "mowe_plan: error: " << e.what() << "\n";
    return 2;
  }
}
