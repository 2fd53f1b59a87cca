#include "runtime/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "runtime/check.h"

namespace mowe {

double learning_rate(const LrSchedule& s, int64_t step) {
  MOWE_CHECK(step >= 0 && s.warmup_steps >= 0 && s.peak >= 0,
             "learning_rate: step {}, warmup_steps {} and peak {} must be >= 0", step,
             s.warmup_steps, s.peak);
  const double t = static_cast<double>(step), warmup = static_cast<double>(s.warmup_steps);
  if (s.kind == LrScheduleKind::Rsqrt) {
    const double w = std::max(warmup, 1.0);  // warmup 0 would give 0/0 at t = 0
    return s.peak * std::sqrt(w / std::max(t, w));
  }
  if (step < s.warmup_steps) return s.peak * t / warmup;
  if (s.kind == LrScheduleKind::Constant) return s.peak;
  // Config validation keeps warmup_steps < steps for the decaying schedules; the max guards
  // direct callers against a division by zero.
  const double span = static_cast<double>(std::max<int64_t>(s.total_steps - s.warmup_steps, 1));
  const double p = std::min(1.0, (t - warmup) / span);
  const double r = s.min_ratio;
  if (s.kind == LrScheduleKind::Cosine)
    return s.peak * (r + (1.0 - r) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
  return s.peak * (r + (1.0 - r) * (1.0 - p));
}

}  // namespace mowe
