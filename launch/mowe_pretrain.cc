// mowe_pretrain: the SPMD training program, one process per rank.
//   mpirun -np N build/bin/mowe_pretrain --config configs/wordnet_small.textproto [--set k=v]...
// Runs in the frame of launch/program/program.h (every rank loads and validates the
// configuration, and all ranks must agree on it); then it trains (launch/train/trainer.h), or
// checks its inputs as training would without training (--dry-run), or prints the model's size
// and cost (--describe). SIGTERM, SIGUSR1 and SIGINT make the ranks write a checkpoint at the
// next step boundary and exit 0 (130 for SIGINT).
#include <spdlog/spdlog.h>

#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>

#include "comm/agree.h"
#include "data/span_corruption.h"
#include "launch/program/program.h"
#include "launch/train/config_rules.h"
#include "launch/train/preemption.h"
#include "launch/train/trainer.h"
#include "model/describe.h"
#include "model/memory_estimate.h"
#include "runtime/config/config.h"

namespace {

constexpr const char* kUsage =
    "mpirun -np N mowe_pretrain --config FILE [--set path=value]... [--resume auto|none|PATH]\n"
    "                           [--dry-run] [--describe]\n"
    "  --resume    auto: continue from the newest checkpoint in training.checkpoint_dir that\n"
    "              loads (start at step 0 when there is none); none: start at step 0 and\n"
    "              replace the checkpoints already there; PATH: continue from that checkpoint\n"
    "              directory (any world size). Without --resume a run starts at step 0 and is\n"
    "              refused when training.checkpoint_dir holds checkpoints\n"
    "  --dry-run   check the configuration, the MPI world, every input file, the dispatch plan\n"
    "              for this world size and the checkpoint directory, then exit without training\n"
    "  --describe  print parameter counts, FLOPs and the memory of one rank at this world size\n"
    "              (mpirun -np N), then exit\n"
    "SIGTERM, SIGUSR1 or SIGINT: checkpoint at the next step boundary, then exit 0 (SIGINT: 130).\n"
    "Before training: mowe_vocab --config FILE (tokenizer and routing vocabulary), and\n"
    "optionally mowe_plan --config FILE --world-size N (the dispatch plan).";

// "" when --resume was not given: a fresh start that must not replace committed checkpoints.
std::string resume_mode(const mowe::config::CommonFlags& flags) {
  auto it = flags.values.find("--resume");
  return it == flags.values.end() ? "" : it->second;
}

mowe::config::Config load(const mowe::config::CommonFlags& flags) {
  mowe::config::Config config = mowe::train::load_config(flags.config_path, flags.overrides);
  const std::string resume = resume_mode(flags);
  if (!resume.empty() && resume != "auto" && resume != "none" &&
      !std::filesystem::exists(std::filesystem::path(resume) / "manifest.pb"))
    throw mowe::Error(fmt::format(
        "--resume {}: not a checkpoint directory (no manifest.pb); use auto, none, or a "
        "step-NNNNNNNN directory of training.checkpoint_dir",
        resume));
  return config;
}

// Parameter counts, FLOPs and one rank's memory at this world size, computed from the config
// alone.
void describe(const mowe::config::Config& cfg, int world) {
  const auto& d = cfg.data();
  int64_t targets = d.target_length();
  if (targets == 0)
    targets =
        mowe::data::t5_span_lengths(d.input_length(), d.noise_density(), d.mean_noise_span_length())
            .targets_length;
  std::cout << mowe::model::describe_report(
      mowe::model::describe(cfg.model(), d.input_length(), targets));
  std::cout << fmt::format("(sequence: {} encoder + {} decoder tokens)\n", d.input_length(),
                           targets);
  std::cout << mowe::model::memory_report(mowe::model::estimate_memory(cfg, world));
}

int run(const mowe::program::Setup& s) {
  const int rank = s.rank;
  if (s.flags.has("--describe")) {
    if (rank == 0) describe(s.config, s.world);
    return 0;
  }
  if (s.flags.has("--dry-run")) {
    // The checks a Trainer makes before it allocates the model, through the same functions.
    mowe::train::check_training_inputs(s.config, s.comm, resume_mode(s.flags));
    spdlog::info("[pretrain] dry run: inputs, dispatch plan and checkpoint directory are usable");
    spdlog::info("[pretrain] dry run complete");
    return 0;
  }
  mowe::train::Trainer trainer(s.config, s.comm);
  trainer.resume(resume_mode(s.flags));
  const mowe::train::RunResult result = trainer.run();
  if (rank == 0 && !result.metrics.empty()) {
    // The summary a user looks for at the end of a run, in one place.
    std::string summary = fmt::format("[pretrain] summary: step {}", trainer.state().step);
    if (!std::isnan(result.train_loss))
      summary += fmt::format(", training loss {:.4f}", result.train_loss);
    if (!std::isnan(result.eval_loss))
      summary += fmt::format(", validation loss {:.4f}", result.eval_loss);
    const std::string ckpt = result.last_checkpoint.empty()
                                 ? s.config.training().checkpoint_dir() + "/latest"
                                 : result.last_checkpoint;
    summary += fmt::format("; checkpoint {}; metrics {}", ckpt, result.metrics);
    if (result.diverged_steps > 0)
      summary += fmt::format(
          "; DIVERGED: the last {} steps had a non-finite loss, so no final checkpoint was "
          "written (resume from the last one with a lower training.learning_rate or "
          "training.grad_clip_norm)",
          result.diverged_steps);
    spdlog::info("{}", summary);
  }
  if (result.diverged_steps > 0) return 1;
  return result.stop_signal == SIGINT ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return mowe::program::run_program(
      argc, argv,
      {.name = "mowe_pretrain",
       .tag = "pretrain",
       .usage = kUsage,
       .bool_flags = {"--dry-run", "--describe"},
       .value_flags = {"--resume"},
       // From here on a stop signal only sets a flag: a job told to stop while it starts up
       // still stops cleanly at its first step boundary.
       .on_start = mowe::train::install_stop_handlers,
       .load = load,
       .run = run});
}
