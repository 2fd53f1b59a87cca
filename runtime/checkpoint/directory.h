// The checkpoint directory protocol. <dir>/step-00000010/ holds manifest.pb, the data files and
// any caller files; <dir>/latest names the newest complete checkpoint. A checkpoint is written in
// <dir>/.tmp-step-00000010/ and renamed into place only when complete, so a crash at any moment
// leaves the previous checkpoints intact and `latest` naming one of them.
//
// Order of calls (the trainer's phases, with barriers between them):
//   one process:    check_checkpoint_directory, then begin_checkpoint
//   every process:  ChunkWriter::write_chunks..., ChunkWriter::sync
//   one process:    gathers the CRCs, Layout::fill_manifest, commit_checkpoint,
//                   remove_old_checkpoints
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/proto/checkpoint.pb.h"

namespace mowe::checkpoint {

// "step-00000010": eight digits or more, so names sort like steps up to 10^8.
std::string checkpoint_name(int64_t step);

// Creates dir (and parents) when missing; throws Error "<what> '<dir>' ..." when it is not a
// directory, cannot be created or is not writable (probed by creating a file, which also catches
// read-only mounts when running as root). `what` names the setting, e.g.
// "training.checkpoint_dir".
void check_checkpoint_directory(const std::string& dir,
                                const std::string& what = "checkpoint directory");

// Removes a stale <dir>/.tmp-<name>, creates it anew with every data file of the layout at its
// size (sparse until written), and returns its path.
std::string begin_checkpoint(const std::string& dir, int64_t step, const Layout& layout);

// After every writer has synced: writes manifest.pb into tmp_dir (format_version and step set
// here), syncs tmp_dir, renames it to <dir>/<name> (replacing an existing checkpoint of that
// step only then), syncs dir, and points `latest` at it.
void commit_checkpoint(const std::string& dir, const std::string& tmp_dir, int64_t step,
                       const CheckpointManifest& manifest);

struct CheckpointInfo {
  int64_t step = 0;
  std::string name;  // "step-00000010"
  std::string path;  // "<dir>/step-00000010"
};

// Complete checkpoints (directories holding manifest.pb), newest step first, one per step:
// step-N, or where a crash interrupted the replacement of step-N (no RENAME_EXCHANGE) the
// complete .tmp-step-N, else .old-step-N. Empty when dir does not exist. When `incomplete` is
// given, it receives the paths of step-N directories without a manifest: only a .tmp- or .old-
// directory lacks one legitimately, so these were damaged or made by hand.
std::vector<CheckpointInfo> list_checkpoints(const std::string& dir,
                                             std::vector<std::string>* incomplete = nullptr);

// Sets aside a checkpoint that failed to load: renames it to <dir>/step-N.damaged (step-N.damaged-2
// and so on when that exists), a name that list_checkpoints never returns, so it is never resumed
// from, never counted as a kept checkpoint and never removed by retention. Returns the new path.
std::string set_aside_damaged(const std::string& dir, const CheckpointInfo& checkpoint);

// The name in <dir>/latest, or nullopt when there is none. Error when it holds something other
// than a checkpoint name.
std::optional<std::string> read_latest(const std::string& dir);

// Keeps the `keep` newest complete checkpoints and the one `latest` names; removes older ones
// and stale .tmp-* directories (call when no checkpoint is being written). Returns the names
// removed.
std::vector<std::string> remove_old_checkpoints(const std::string& dir, int keep);

// Removes the complete checkpoints of steps after `step`: a history abandoned by a run resumed
// from an older checkpoint. Returns their names.
std::vector<std::string> remove_later_checkpoints(const std::string& dir, int64_t step);

}  // namespace mowe::checkpoint
