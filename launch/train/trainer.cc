#include "launch/train/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>

#include "launch/train/checkpoint.h"
#include "launch/train/collective.h"
#include "launch/train/preemption.h"
#include "runtime/checkpoint/directory.h"

namespace mowe::train {
namespace {

using Clock = std::chrono::steady_clock;

const char* signal_name(int signo) {
  switch (signo) {
    case SIGTERM:
      return "SIGTERM";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGINT:
      return "SIGINT";
    default:
      return "a stop signal";
  }
}

}  // namespace

Trainer::Trainer(const config::Config& config, comm::Communicator& comm) {
  const std::string& dir = config.training().checkpoint_dir();
  run_agreed(comm, [&] {
    if (dir.empty()) throw Error("training.checkpoint_dir is empty: name a directory");
    if (comm.rank() == 0) checkpoint::check_checkpoint_directory(dir, "training.checkpoint_dir");
  });
  job_ = std::make_unique<Job>(config, comm);
  runner_ = std::make_unique<StepRunner>(*job_);
  state_.dropout_seed = static_cast<uint64_t>(config.training().seed());
  state_.loader = job_->train_loader().state();
}

Trainer::~Trainer() = default;

void Trainer::resume(const std::string& how) {
  if (std::optional<TrainState> restored = train::resume(*job_, how)) state_ = *restored;
}

StepResult Trainer::step() {
  const StepResult r = runner_->train_step(job_->train_loader().next(), state_);
  state_.loader = job_->train_loader().state();
  return r;
}

std::string Trainer::save() {
  return save_checkpoint(*job_, state_);
}

RunResult Trainer::run() {
  const auto& t = job_->config().training();
  comm::Communicator& comm = job_->comm();
  RunResult result;
  int64_t saved_step = -1;
  const auto checkpoint = [&] {
    if (saved_step == state_.step) return;
    result.last_checkpoint = save();
    saved_step = state_.step;
  };
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  double window_loss = 0;
  int window_steps = 0;
  if (state_.step >= t.steps()) {
    spdlog::info("[train] already at step {} of {}: nothing to train", state_.step, t.steps());
    return result;
  }
  spdlog::info("[train] training steps {}..{} of {} sequences", state_.step + 1, t.steps(),
               t.global_batch_size());
  while (true) {
    if (const int signo = stop_requested(comm)) {
      checkpoint();
      spdlog::info("[train] {} received: stopped at step {} after writing {}", signal_name(signo),
                   state_.step, result.last_checkpoint);
      result.stop_signal = signo;
      return result;
    }
    if (state_.step >= t.steps()) break;
    const StepResult r = step();
    window_tokens += r.tokens;
    window_loss += r.loss;
    ++window_steps;
    const bool last = state_.step == t.steps();
    if (state_.step % t.log_every() == 0 || last) {
      const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
      spdlog::info(
          "[train] step {}/{} loss {:.4f} lr {:.3g} grad_norm {:.3f} {:.0f} tokens/s (real "
          "tokens, padding excluded)",
          state_.step, t.steps(), window_loss / window_steps, r.learning_rate, r.grad_norm,
          window_tokens / secs);
      window_start = Clock::now();
      window_tokens = 0, window_loss = 0, window_steps = 0;
    }
    if (t.eval_every() > 0 && (state_.step % t.eval_every() == 0 || last)) {
      const double eval_loss = evaluate(*runner_, *job_, t.eval_batches());  // collective
      spdlog::info("[train] step {} validation loss {:.4f} ({} batches)", state_.step, eval_loss,
                   t.eval_batches());
    }
    if ((t.checkpoint_every() > 0 && state_.step % t.checkpoint_every() == 0) || last) checkpoint();
  }
  spdlog::info("[train] done: step {} in {:.1f} s", state_.step,
               std::chrono::duration<double>(Clock::now() - start).count());
  return result;
}

}  // namespace mowe::train
