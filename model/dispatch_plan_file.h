// Dispatch plan files and their inputs from a config and a routing vocabulary (library
// mowe_dispatch_plan, which adds data/ to mowe_model). The trainer calls
//
//   model::DispatchPlan plan = model::load_plan_for(config, *pipeline.vocab, world_size);
//
// which loads parallel.plan and refuses a plan built for another world size, routing vocabulary
// or bucket configuration, naming both values and the mowe_plan command that rebuilds it. Plan
// files are framed with a CRC32C (data/derived_file.h): a damaged, truncated or older file is
// refused with the same command.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/routing_vocab.h"
#include "model/dispatch_plan.h"
#include "runtime/proto/config.pb.h"

namespace mowe::model {

// Content hash of a routing vocabulary: its tokenizer hash, piece count, case-variant setting,
// every entry's and variant key's tokens, and every frequency. Statistics, paths and word
// spellings do not enter it (they change no routing decision).
uint64_t routing_vocab_hash(const data::RoutingVocabFile& file);
inline uint64_t routing_vocab_hash(const data::RoutingVocab& vocab) {
  return routing_vocab_hash(vocab.file());
}

// Synthetic frequencies for sizing a job before a routing vocabulary exists: routing id i gets
// round(1e12 / (i + 1)^exponent). Real vocabularies put pieces first, so id order is not
// frequency order there; the synthetic one is only a stand-in for the shape of the curve.
std::vector<int64_t> zipf_frequencies(int64_t vocab_size, double exponent);
uint64_t zipf_vocab_hash(int64_t vocab_size, double exponent);

// Global tokens per step through the MoWE layers of each stack: training.global_batch_size x
// data.input_length, and x data.target_length (T5's derivation from the input length, the noise
// density and the mean span length when it is 0: 114 for 512).
struct StepTokens {
  int64_t encoder = 0;
  int64_t decoder = 0;
};
StepTokens step_tokens(const config::Config& config);

// The vocabulary's frequencies padded with zeros to model.mowe.routing_vocab_size; refuses a
// vocabulary without frequencies or with more ids than that.
std::vector<int64_t> padded_frequencies(const data::RoutingVocab& vocab, const std::string& path,
                                        int64_t routing_vocab_size);

// Everything DispatchPlan::build needs besides model.mowe.
PlanInputs plan_inputs(const config::Config& config, const std::string& config_path,
                       const data::RoutingVocab& vocab, int world_size);

inline constexpr std::string_view kPlanMagic = "MOWEPLAN";

void save_plan(const DispatchPlan& plan, const std::string& path);  // atomically
// world_size (0: unknown) completes the mowe_plan command in messages.
DispatchPlan load_plan(const std::string& path, int world_size = 0);
// Loads and checks (DispatchPlan::check) in one step.
DispatchPlan load_plan(const std::string& path, int world_size, uint64_t vocab_hash,
                       uint64_t bucket_config_hash);
// parallel.plan, checked against this job: world_size, routing_vocab_hash(vocab) and
// bucket_config_hash(model.mowe).
DispatchPlan load_plan_for(const config::Config& config, const data::RoutingVocab& vocab,
                           int world_size);

}  // namespace mowe::model
