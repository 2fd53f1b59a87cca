#include "launch/train/trainer.h"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <filesystem>

#include "comm/agree.h"
#include "launch/train/checkpoint.h"
#include "launch/train/preemption.h"
#include "launch/train/progress.h"
#include "runtime/checkpoint/directory.h"
#include "runtime/files.h"

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

// training.checkpoint_dir must be a usable directory that every rank sees (they all write into
// the same files): rank 0 creates it and leaves a probe file that every rank must find.
void check_shared_checkpoint_dir(const std::string& dir, comm::Communicator& comm) {
  std::string probe;
  comm::run_agreed(comm, [&] {
    if (dir.empty()) throw Error("training.checkpoint_dir is empty: name a directory");
    if (comm.rank() != 0) return;
    checkpoint::check_checkpoint_directory(dir, "training.checkpoint_dir");
    probe = fmt::format("{}/.probe-{}-{}", dir, ::getpid(), std::time(nullptr));
    write_file_atomically(probe, "probe\n");
  });
  probe = comm::broadcast_string(comm, 0, probe);
  const auto remove_probe = [&] {
    std::error_code ignored;
    if (comm.rank() == 0) std::filesystem::remove(probe, ignored);
  };
  try {
    comm::run_agreed(comm, [&] {
      if (!std::filesystem::exists(probe))
        throw Error(fmt::format(
            "training.checkpoint_dir '{}' is not the directory rank 0 sees (its probe file {} "
            "is missing here): put it on a file system every rank shares",
            dir, probe));
    });
  } catch (...) {
    remove_probe();
    throw;
  }
  remove_probe();
}

}  // namespace

void check_training_inputs(const config::Config& config, comm::Communicator& comm,
                           const std::string& resume) {
  choose_device(config, comm);
  check_shared_checkpoint_dir(config.training().checkpoint_dir(), comm);
  if (resume.empty()) refuse_unasked_fresh_start(config.training().checkpoint_dir(), comm);
  const data::DataPipeline data = open_pipeline_agreed(config, comm);
  resolve_plan_agreed(config, *data.vocab, comm);
}

Trainer::Trainer(const config::Config& config, comm::Communicator& comm) {
  check_shared_checkpoint_dir(config.training().checkpoint_dir(), comm);
  job_ = std::make_unique<Job>(config, comm);
  runner_ = std::make_unique<StepRunner>(*job_);
  state_.dropout_seed = static_cast<uint64_t>(config.training().seed());
  state_.loader = job_->train_loader().state();
}

Trainer::~Trainer() = default;

void Trainer::resume(const std::string& how) {
  const std::string& dir = job_->config().training().checkpoint_dir();
  if (how.empty()) {
    refuse_unasked_fresh_start(dir, job_->comm());
    return resume("none");
  }
  if (how == "none" && job_->comm().rank() == 0) {
    const auto found = checkpoint::list_checkpoints(dir);
    if (!found.empty())
      spdlog::warn(
          "[checkpoint] --resume none: starting at step 0 although {} holds checkpoints up to "
          "step {}: this run's checkpoints replace them",
          dir, found.front().step);
  }
  const std::string& init_from = job_->config().training().init_from();
  if (std::optional<TrainState> restored = train::resume(*job_, how)) {
    state_ = *restored;
    last_saved_step_ = state_.step;  // a stop right away need not write it again
    // A preempted fine-tuning run continues from its own checkpoint, which already holds the
    // initial parameters trained further.
    if (!init_from.empty() && job_->comm().rank() == 0)
      spdlog::info("[checkpoint] training.init_from '{}' ignored: resumed this run at step {}",
                   init_from, state_.step);
    return;
  }
  if (init_from.empty()) return;
  // Parameters only: the optimizer state and the loader position stay those of step 0 (the
  // pre-training run's moments and data position mean nothing to the new task).
  const std::string path = find_init_checkpoint(*job_, init_from);
  const int64_t step = load_parameters(*job_, path);
  if (job_->comm().rank() == 0)
    spdlog::info("[train] initialised from {} (trained {} steps); starting at step 0", path, step);
}

const StepResult& Trainer::step() {
  const StepResult& r = runner_->train_step(job_->train_loader().next(), state_);
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
  int bad_steps = 0;  // consecutive steps whose update was skipped
  const auto checkpoint = [&] {
    if (last_saved_step_ == state_.step) return;
    if (bad_steps > 0) {  // agreed: the loss is global
      if (comm.rank() == 0)
        spdlog::warn(
            "[checkpoint] step {} not written: the last {} steps had a non-finite loss or "
            "gradient norm, so the newest checkpoint stays that of a finite step",
            state_.step, bad_steps);
      return;
    }
    result.last_checkpoint = save();
  };
  const auto start = Clock::now();
  if (state_.step >= t.steps()) {
    spdlog::info("[train] already at step {} of {}: nothing to train", state_.step, t.steps());
    return result;
  }
  Progress progress(*job_, state_.step);
  const auto finish = [&] {
    progress.flush();
    result.train_loss = progress.last_train_loss();
    result.eval_loss = progress.last_eval_loss();
    result.metrics = progress.metrics_path();
  };
  spdlog::info("[train] training steps {}..{} of {} sequences", state_.step + 1, t.steps(),
               t.global_batch_size());
  while (true) {
    if (const int signo = stop_requested(comm)) {
      checkpoint();
      spdlog::info("[train] {} received: stopped at step {} after writing {}", signal_name(signo),
                   state_.step,
                   bad_steps > 0 ? "nothing (its last steps had a non-finite loss)"
                   : result.last_checkpoint.empty()
                       ? "nothing (resumed from a checkpoint of this step)"
                       : result.last_checkpoint);
      result.stop_signal = signo;
      finish();
      return result;
    }
    if (state_.step >= t.steps()) break;
    progress.before_step();
    const StepResult& r = step();
    progress.after_step(state_.step, r);
    if (r.skipped) {
      ++bad_steps;
      if (comm.rank() == 0)  // the same on every rank: said once
        spdlog::warn(
            "[train] step {}: loss {} and gradient norm {}{}: update skipped ({} such steps in a "
            "row, "
            "training.max_bad_steps = {})",
            state_.step, r.loss, r.grad_norm,
            r.first_bad.empty() ? "" : ", first non-finite: " + r.first_bad, bad_steps,
            t.max_bad_steps());
      if (bad_steps >= t.max_bad_steps()) {
        progress.flush();
        throw comm::AgreedError(fmt::format(
            "diverged at step {}: {} steps in a row with a non-finite loss or gradient norm{}; "
            "resume from the last checkpoint with a lower training.learning_rate, or clip "
            "gradients (training.grad_clip_norm)",
            state_.step, bad_steps,
            r.first_bad.empty() ? "" : " (first non-finite: " + r.first_bad + ")"));
      }
    } else {
      bad_steps = 0;
    }
    const bool last = state_.step == t.steps();
    if (t.eval_every() > 0 && (state_.step % t.eval_every() == 0 || last)) {
      const double eval_loss = evaluate(*runner_, *job_, t.eval_batches());  // collective
      spdlog::info("[train] step {} validation loss {:.4f} (perplexity {:.2f}, {} batches)",
                   state_.step, eval_loss, std::exp(eval_loss), t.eval_batches());
      progress.after_eval(state_.step, eval_loss);
    }
    if ((t.checkpoint_every() > 0 && state_.step % t.checkpoint_every() == 0) || last) checkpoint();
  }
  finish();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (bad_steps > 0) {
    result.diverged_steps = bad_steps;
    spdlog::error(
        "[train] diverged: step {} in {:.1f} s, the last {} steps with a non-finite loss or "
        "gradient norm (updates skipped); no final checkpoint written",
        state_.step, secs, bad_steps);
    return result;
  }
  spdlog::info("[train] done: step {} in {:.1f} s", state_.step, secs);
  return result;
}

}  // namespace mowe::train
