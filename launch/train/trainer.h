// The training loop behind mowe_pretrain, one instance per rank (SPMD): steps with logging,
// evaluation, periodic checkpoints, resume, and a checkpoint-and-stop on a preemption signal.
//
//   train::Trainer trainer(config, comm);   // set-up (Job), checkpoint directory checked
//   trainer.resume("auto");                 // or "none", "", or a checkpoint directory
//   train::RunResult r = trainer.run();     // to training.steps, or until a stop signal
#pragma once

#include <limits>
#include <memory>
#include <string>

#include "launch/train/job.h"
#include "launch/train/step.h"
#include "launch/train/train_state.h"

namespace mowe::train {

struct RunResult {
  int stop_signal = 0;          // the signal that stopped the run early, or 0
  std::string last_checkpoint;  // path of the last checkpoint written by this run, if any
  double train_loss = std::numeric_limits<double>::quiet_NaN();  // of the last logged window
  double eval_loss = std::numeric_limits<double>::quiet_NaN();   // the last validation loss
  std::string metrics;  // metrics.jsonl of this run (rank 0; empty elsewhere)
  // The run ended with this many steps in a row skipped for a non-finite loss or gradient norm
  // (fewer than training.max_bad_steps): it diverged, and no checkpoint of it was written.
  int diverged_steps = 0;
};

// What constructing a Trainer checks before it allocates the model, through the same functions:
// training.checkpoint_dir is usable and the same directory on every rank, the job fits this
// host's memory, every input file opens, and the dispatch plan serves this world size and is the
// same on every rank; and, when `resume` is "" (no --resume given), that the checkpoint directory
// holds no checkpoint this run would replace. mowe_pretrain --dry-run, so that it refuses what
// training refuses. Collective; errors agreed.
void check_training_inputs(const config::Config& config, comm::Communicator& comm,
                           const std::string& resume);

class Trainer {
 public:
  // Checks that training.checkpoint_dir is (or can be made) a writable directory that every rank
  // sees, then builds the job. Collective over comm.
  Trainer(const config::Config& config, comm::Communicator& comm);
  ~Trainer();

  // "none", "auto" or a checkpoint directory (see checkpoint.h), or "" when the user chose none
  // of them: then a start at step 0 over committed checkpoints is refused (only an explicit
  // "none" may replace them). Collective.
  void resume(const std::string& how);
  // Trains from state().step to training.steps with logging, evaluation and checkpoints as
  // configured; stops early, after a checkpoint, when any rank received a stop signal. No
  // checkpoint is written while the last step was skipped as non-finite: a run that ends so
  // returns diverged_steps > 0 and leaves the last checkpoint of a finite step the newest.
  RunResult run();
  // One step on the next training batch (tests).
  const StepResult& step();  // valid until the next step
  // Writes a checkpoint of the current state now; returns its path. Collective.
  std::string save();

  const TrainState& state() const { return state_; }
  Job& job() { return *job_; }
  StepRunner& runner() { return *runner_; }

 private:
  std::unique_ptr<Job> job_;
  std::unique_ptr<StepRunner> runner_;
  TrainState state_;              // the only progress counter
  int64_t last_saved_step_ = -1;  // the step of the checkpoint this state equals, if any
};

}  // namespace mowe::train
