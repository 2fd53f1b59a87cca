// What a training checkpoint holds and how the ranks share writing and reading it, on top of the
// model-agnostic format of runtime/checkpoint/ (docs/checkpoints.md):
// - every parameter under its name and its optimizer state as "<parameter>/<state>": dense
//   tensors in dense.bin, written by rank 0; expert tensors in experts.bin, each block of experts
//   (one CRC chunk) written by the first rank of its replica group at an offset fixed by its
//   global expert index, so the files do not depend on the world size;
// - the TrainState in the manifest, and each rank's own copy in rank-NNNNN.pb;
// - fingerprints of the routing vocabulary, routing table and bucket layout
//   (those files and manifest fields, and the commit: launch/train/checkpoint_files.h).
// Reading is resharding: each rank reads the global rows its plan gives it, at any world size.
#pragma once

#include <optional>
#include <string>

#include "launch/train/job.h"
#include "launch/train/train_state.h"

namespace mowe::train {

// Writes <training.checkpoint_dir>/step-<N> (atomically: complete or absent) and returns its
// path; then keeps the newest training.keep_checkpoints. Collective; an error on any rank is
// thrown on every rank and leaves earlier checkpoints intact.
std::string save_checkpoint(Job& job, const TrainState& state);

// Loads a checkpoint directory into the job's parameters, optimizer state and training loader
// and returns its TrainState. Refuses (every rank alike) a checkpoint of another routing
// vocabulary, routing table or bucket layout naming both hashes, a tensor of another shape, and a
// damaged file naming the tensor. Collective.
TrainState load_checkpoint(Job& job, const std::string& path);

// Loads only the parameters of a checkpoint (no optimizer state, no loader position) and returns
// the step it was written at: evaluation, and fine-tuning from a pre-trained checkpoint. The same
// checks as load_checkpoint. Collective.
int64_t load_parameters(Job& job, const std::string& path);

// training.init_from: `path` itself when it is a checkpoint (holds manifest.pb), else the newest
// complete checkpoint of the checkpoint_dir `path` (`latest` is a file naming a step, not a
// directory to point at). An Error naming the path when it is neither. Collective: rank 0 looks,
// every rank gets its answer.
std::string find_init_checkpoint(Job& job, const std::string& path);

// Without --resume, a start over committed checkpoints is refused: they would be replaced by this
// run's (its first save removes the later steps). Throws a UserError naming the directory, its
// newest step and both choices (--resume auto, --resume none). Collective: rank 0 lists, the
// error is agreed.
void refuse_unasked_fresh_start(const std::string& checkpoint_dir, comm::Communicator& comm);

// --resume: "none" (nullopt), "auto" (the newest checkpoint in training.checkpoint_dir that
// loads; a damaged one is skipped with a warning naming the file and tensor; nullopt when there
// is none), or the path of one checkpoint directory. Collective.
std::optional<TrainState> resume(Job& job, const std::string& how);

}  // namespace mowe::train
