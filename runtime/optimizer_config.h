// The optimizer and schedule of a TrainingConfig. Header-only so that mowe_runtime stays free of
// protobuf: only targets that link mowe_config (the programs, the trainer) include it.
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/lr_schedule.h"
#include "runtime/optimizer.h"
#include "runtime/proto/config.pb.h"

namespace mowe {

inline LrSchedule lr_schedule_from_config(const config::TrainingConfig& t) {
  LrScheduleKind kind = LrScheduleKind::Rsqrt;
  switch (t.lr_schedule()) {
    case config::TrainingConfig::CONSTANT:
      kind = LrScheduleKind::Constant;
      break;
    case config::TrainingConfig::RSQRT:
      kind = LrScheduleKind::Rsqrt;
      break;
    case config::TrainingConfig::COSINE:
      kind = LrScheduleKind::Cosine;
      break;
    case config::TrainingConfig::LINEAR:
      kind = LrScheduleKind::Linear;
      break;
  }
  return {kind, t.learning_rate(), t.warmup_steps(), t.steps(), t.min_lr_ratio()};
}

// The rate of the update made after `step` updates (0 for the first), see lr_schedule.h.
inline double learning_rate(const config::TrainingConfig& t, int64_t step) {
  return learning_rate(lr_schedule_from_config(t), step);
}

inline std::unique_ptr<Optimizer> make_optimizer(const config::TrainingConfig& t,
                                                 DeviceAllocator& allocator) {
  if (t.optimizer() == config::TrainingConfig::ADAMW) {
    return std::make_unique<AdamW>(allocator, AdamWOptions{.beta1 = t.adam_beta1(),
                                                           .beta2 = t.adam_beta2(),
                                                           .eps = t.adam_eps(),
                                                           .weight_decay = t.weight_decay(),
                                                           .lazy_rows = t.adamw_lazy_experts()});
  }
  AdafactorOptions options;
  options.decay_rate = t.adafactor_decay_rate();
  options.clip_threshold = t.adafactor_clip_threshold();
  return std::make_unique<Adafactor>(allocator, options);
}

}  // namespace mowe
