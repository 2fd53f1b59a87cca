// What a running job reports: one line on rank 0 every training.log_every steps (loss, learning
// rate, gradient norm, real tokens/s, MFU against the measured sgemm peak, the share of the
// step blocked in all-to-all and allreduce, ETA), and every step's scalars in
// <run_dir>/metrics.jsonl and <run_dir>/tb/ (runtime/metrics).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "launch/train/job.h"
#include "launch/train/step.h"
#include "launch/train/throughput.h"
#include "model/describe.h"
#include "runtime/metrics/run_metrics.h"

namespace mowe::train {

// training.run_dir, or training.checkpoint_dir itself when it is empty.
std::string run_directory(const config::TrainingConfig& training);

class Progress {
 public:
  // Measures (or reads the cached) sgemm peak and, on rank 0, opens the run's metric files at
  // start_step (later records of an abandoned history are dropped). Collective.
  Progress(Job& job, int64_t start_step);
  ~Progress();

  // Around every training step: the step's wall time and the time it was blocked in
  // collectives are what the log line reports (evaluations and checkpoints are not counted).
  // after_step is collective on log steps.
  void before_step();
  void after_step(int64_t step, const StepResult& r);
  // After an evaluation at `step` (rank 0 records it).
  void after_eval(int64_t step, double loss);
  void flush();

  // The mean training loss of the last logged window and the last validation loss (NaN: none).
  double last_train_loss() const { return last_train_loss_; }
  double last_eval_loss() const { return last_eval_loss_; }
  std::string metrics_path() const { return metrics_ ? metrics_->jsonl_path() : ""; }

 private:
  // Logs the window ending at `step` and appends its perf/ scalars. Collective.
  void log_window(int64_t step, std::vector<metrics::Scalar>& scalars);

  // Reports the first time a step beats the sgemm peak (rank 0 logs).
  void report_raised_peak(double achieved, double replaced);

  Job& job_;
  model::ModelSize size_;
  SgemmPeak peak_;  // as measured or cached at the start
  MfuMeter mfu_;    // the peak as the steps raise it
  bool raise_reported_ = false;
  double stored_peak_ = 0;                        // the job peak the cache was last refreshed to
  std::unique_ptr<metrics::RunMetrics> metrics_;  // rank 0 only
  using Clock = std::chrono::steady_clock;
  Clock::time_point run_start_;
  int64_t start_step_ = 0;
  // The current log window.
  int steps_ = 0;
  double loss_ = 0, seconds_ = 0, model_flops_ = 0;
  int64_t tokens_ = 0;
  Clock::time_point step_start_;
  double alltoall_start_ = 0, allreduce_start_ = 0;  // blocked_seconds at step start
  double alltoall_ = 0, allreduce_ = 0;              // blocked in the window's steps
  double last_lr_ = 0, last_grad_norm_ = 0;
  double last_train_loss_, last_eval_loss_;  // NaN until known
};

}  // namespace mowe::train
