// The training section's rules, and the assembly of every module's rules into one validation.
#include "launch/train/config_rules.h"

#include <fmt/format.h>

#include <vector>

#include "data/config_rules.h"
#include "model/config_rules.h"

namespace mowe::train {
namespace {

using config::Config;
using config::DataConfig;
using config::Result;
using config::TrainingConfig;
using config::violation;

// Evaluation reads the held-out documents the data section sets aside: there must be some.
Result check_evaluation(const Config& c) {
  const DataConfig& d = c.data();
  if (c.training().eval_every() > 0 && d.streaming() && d.validation_path().empty())
    return violation("training.eval_every",
                     fmt::format("training.eval_every = {} evaluates on held-out documents, but "
                                 "a streaming corpus is never split: set data.validation_path, "
                                 "or training.eval_every to 0",
                                 c.training().eval_every()));
  if (c.training().eval_every() > 0 && d.validation_path().empty() && d.validation_fraction() == 0)
    return violation("training.eval_every",
                     fmt::format("training.eval_every = {} evaluates on the held-out split, but "
                                 "data.validation_fraction = 0 holds nothing out: set "
                                 "training.eval_every to 0, or hold out a share",
                                 c.training().eval_every()));
  return std::nullopt;
}

// The decaying schedules run from the end of the warm-up to training.steps.
Result check_schedule(const Config& c) {
  const TrainingConfig& t = c.training();
  bool decays =
      t.lr_schedule() == TrainingConfig::COSINE || t.lr_schedule() == TrainingConfig::LINEAR;
  if (!decays || t.warmup_steps() < t.steps()) return std::nullopt;
  return violation(
      "training.warmup_steps",
      fmt::format("training.warmup_steps = {} must be < training.steps ({}) for the "
                  "{} schedule",
                  t.warmup_steps(), t.steps(), TrainingConfig::LrSchedule_Name(t.lr_schedule())));
}

constexpr config::Rule kTrainingRules[] = {check_schedule, check_evaluation};

}  // namespace

config::Rules config_rules() {
  static const std::vector<config::Rule> all = [] {
    std::vector<config::Rule> rules;
    for (config::Rules module :
         {model::config_rules(), data::config_rules(), config::Rules(kTrainingRules)})
      rules.insert(rules.end(), module.begin(), module.end());
    return rules;
  }();
  return all;
}

config::Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return config::load_config(path, overrides, config_rules());
}

config::Config load_config_text(const std::string& text, const std::string& source,
                                const std::vector<std::string>& overrides) {
  return config::load_config_text(text, source, overrides, config_rules());
}

void validate(const config::Config& config) {
  config::validate(config, config_rules());
}

config::Result find_violation(const config::Config& config) {
  return config::find_violation(config, config_rules());
}

}  // namespace mowe::train
