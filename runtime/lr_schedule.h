// Learning-rate schedules of TrainingConfig.lr_schedule, on plain numbers so that mowe_runtime
// does not depend on the configuration library; runtime/optimizer_config.h builds one from a
// config. Definitions and examples: docs/optimizers.md.
#pragma once

#include <cstdint>

namespace mowe {

enum class LrScheduleKind { Constant, Rsqrt, Cosine, Linear };

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::Rsqrt;
  double peak = 0.01;            // TrainingConfig.learning_rate
  int64_t warmup_steps = 10000;  // linear warmup (Constant, Cosine, Linear); Rsqrt's plateau
  int64_t total_steps = 524288;  // Cosine and Linear reach peak * min_ratio here
  double min_ratio = 0.0;
};

// The rate of the update made after `step` updates (step = 0 for the first update):
//   warmup(t)  = min(1, t / warmup_steps)                     (1 when warmup_steps = 0)
//   Constant   = peak * warmup(t)
//   Rsqrt      = peak * sqrt(w / max(t, w)), w = max(warmup_steps, 1)
//   Cosine     = peak * (r + (1 - r) (1 + cos(pi p)) / 2)     for t >= warmup_steps
//   Linear     = peak * (r + (1 - r) (1 - p))                 for t >= warmup_steps
// with r = min_ratio and p = min(1, (t - warmup_steps) / (total_steps - warmup_steps)); Cosine and
// Linear use peak * warmup(t) before that. Past total_steps the rate stays at peak * r.
double learning_rate(const LrSchedule& schedule, int64_t step);

}  // namespace mowe
