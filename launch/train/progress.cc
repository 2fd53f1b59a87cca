#include "launch/train/progress.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "comm/agree.h"
#include "comm/communicator.h"
#include "runtime/backend.h"

namespace mowe::train {
namespace {

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

// The checkpoint directory itself by default, never its parent: two runs whose checkpoint
// directories sit side by side would otherwise share one metrics.jsonl, and a fresh start of one
// would drop the other's records as abandoned.
std::string run_directory(const config::TrainingConfig& t) {
  return t.run_dir().empty() ? t.checkpoint_dir() : t.run_dir();
}

Progress::Progress(Job& job, int64_t start_step)
    : job_(job),
      run_start_(Clock::now()),
      start_step_(start_step),
      last_train_loss_(std::numeric_limits<double>::quiet_NaN()),
      last_eval_loss_(std::numeric_limits<double>::quiet_NaN()) {
  const auto& c = job.config();
  size_ = model::describe(c.model(), c.data().input_length(), c.data().target_length());
  comm::Communicator& comm = job.comm();
  peak_ = job_sgemm_peak(comm, cpu_threads());
  mfu_ = MfuMeter(peak_.flops);
  stored_peak_ = peak_.flops;
  if (comm.rank() == 0)
    spdlog::info("[train] sgemm peak {:.1f} GFLOP/s over {} ranks ({}{}): the MFU denominator",
                 peak_.flops / 1e9, comm.size(), peak_.measured ? "measured now" : "cached",
                 peak_.cache.empty() ? "" : ", " + peak_.cache);
  comm::run_agreed(comm, [&] {
    if (comm.rank() == 0)
      metrics_ = std::make_unique<metrics::RunMetrics>(run_directory(c.training()), start_step);
  });
  if (metrics_)
    spdlog::info("[train] metrics: {} and TensorBoard events in {}", metrics_->jsonl_path(),
                 std::filesystem::path(metrics_->event_path()).parent_path().string());
}

Progress::~Progress() = default;

void Progress::before_step() {
  step_start_ = Clock::now();
  alltoall_start_ = comm::blocked_seconds(comm::Collective::AllToAll);
  allreduce_start_ = comm::blocked_seconds(comm::Collective::Allreduce);
}

void Progress::after_step(int64_t step, const StepResult& r) {
  const double seconds = std::chrono::duration<double>(Clock::now() - step_start_).count();
  alltoall_ += comm::blocked_seconds(comm::Collective::AllToAll) - alltoall_start_;
  allreduce_ += comm::blocked_seconds(comm::Collective::Allreduce) - allreduce_start_;
  StepWork work{r.encoder_tokens, r.decoder_tokens, r.bucket_rows};
  const double flops = step_model_flops(size_, work);
  if (seconds > 0)
    if (const double replaced = mfu_.observe(flops / seconds); replaced > 0)
      report_raised_peak(flops / seconds, replaced);
  ++steps_;
  loss_ += r.loss;
  seconds_ += seconds;
  tokens_ += r.tokens;
  model_flops_ += flops;
  last_lr_ = r.learning_rate;
  last_grad_norm_ = r.grad_norm;
  std::vector<metrics::Scalar> scalars;
  if (metrics_) {
    scalars = {{"train/loss", r.loss},
               {"train/learning_rate", r.learning_rate},
               {"train/grad_norm", r.grad_norm},
               {"train/update_skipped", r.skipped ? 1.0 : 0.0},
               {"train/real_tokens", double(r.tokens)},
               {"train/step_seconds", seconds},
               {"train/mfu", mfu_.mfu(flops, seconds)}};
    if (r.mowe_tokens > 0) {
      scalars.push_back({"load/unrouted_share", 1.0 - double(r.routed_tokens) / r.mowe_tokens});
      scalars.push_back({"load/routed_tokens", double(r.routed_tokens)});
    }
    const int world = job_.comm().size();
    for (size_t b = 0; b < r.bucket_rows.size(); ++b) {
      // The busiest rank's rows over the mean rank's: 1 is perfect balance, `world` the worst.
      const double mean = double(r.bucket_rows[b]) / world;
      scalars.push_back({fmt::format("load/bucket{}_max_over_mean", b),
                         mean > 0 ? r.bucket_rows_max[b] / mean : 0.0});
      scalars.push_back({fmt::format("load/bucket{}_rows", b), double(r.bucket_rows[b])});
    }
  }
  const int64_t total = job_.config().training().steps();
  const bool log = step % job_.config().training().log_every() == 0 || step == total;
  if (log) log_window(step, scalars);
  if (metrics_) {
    metrics_->write(step, scalars);
    if (log) metrics_->flush();  // a crash loses at most the steps since the last log line
  }
}

void Progress::log_window(int64_t step, std::vector<metrics::Scalar>& scalars) {
  comm::Communicator& comm = job_.comm();
  // Blocked time is per rank: the log reports the mean over ranks of the window.
  double blocked[3] = {alltoall_, allreduce_, seconds_};
  comm.allreduce(Tensor(blocked, DType::F64, Device::CPU, {3}), comm::ReduceOp::Sum);
  const double a2a = blocked[2] > 0 ? blocked[0] / blocked[2] : 0;
  const double ar = blocked[2] > 0 ? blocked[1] / blocked[2] : 0;
  const double tokens_per_s = seconds_ > 0 ? tokens_ / seconds_ : 0;
  const double mfu = mfu_.mfu(model_flops_, seconds_);
  // The cache keeps the best rate seen: a peak the steps raised is stored once per log window.
  if (mfu_.peak() > stored_peak_) {
    refresh_cached_peak(peak_, mfu_.peak());
    stored_peak_ = mfu_.peak();
  }
  const int64_t total = job_.config().training().steps();
  const double elapsed = std::chrono::duration<double>(Clock::now() - run_start_).count();
  const double eta =
      step > start_step_ ? elapsed / double(step - start_step_) * double(total - step) : NAN;
  last_train_loss_ = loss_ / steps_;
  if (comm.rank() == 0) {
    spdlog::info(
        "[train] step {}/{} loss {:.4f} lr {:.3g} grad_norm {:.3f} | {:.0f} tokens/s (real "
        "tokens, padding excluded) MFU {:.1f}% | blocked in all-to-all {:.1f}%, allreduce "
        "{:.1f}% | ETA {}",
        step, total, last_train_loss_, last_lr_, last_grad_norm_, tokens_per_s, 100 * mfu,
        100 * a2a, 100 * ar, duration(eta));
    if (metrics_) {
      scalars.insert(scalars.end(), {{"perf/tokens_per_second", tokens_per_s},
                                     {"perf/mfu", mfu},
                                     {"perf/alltoall_share", a2a},
                                     {"perf/allreduce_share", ar},
                                     {"perf/eta_seconds", std::isfinite(eta) ? eta : 0.0}});
    }
  }
  steps_ = 0;
  loss_ = seconds_ = model_flops_ = alltoall_ = allreduce_ = 0;
  tokens_ = 0;
}

void Progress::report_raised_peak(double achieved, double replaced) {
  if (raise_reported_ || job_.comm().rank() != 0) return;
  raise_reported_ = true;
  const std::string source =
      peak_.cache.empty()
          ? ""
          : fmt::format(" (cached in {}, which keeps the raised peak)", peak_.cache);
  const std::string line = fmt::format(
      "[train] a step ran at {:.1f} GFLOP/s of model FLOPs, {}above the sgemm peak {:.1f} "
      "GFLOP/s{}: the peak is raised to the rate achieved (reported once), so MFU stays at or "
      "below 100%",
      achieved / 1e9, achieved > 2 * mfu_.initial_peak() ? "far " : "", replaced / 1e9, source);
  // A step far above the peak means the peak was measured while the node was busy.
  if (achieved > 2 * mfu_.initial_peak())
    spdlog::warn("{}; the peak was likely measured under load", line);
  else
    spdlog::info("{}", line);
}

void Progress::after_eval(int64_t step, double loss) {
  last_eval_loss_ = loss;
  if (!metrics_) return;
  const metrics::Scalar scalars[] = {{"eval/loss", loss}, {"eval/perplexity", std::exp(loss)}};
  metrics_->write(step, scalars);
  metrics_->flush();
}

void Progress::flush() {
  if (metrics_) metrics_->flush();
}

}  // namespace mowe::train
