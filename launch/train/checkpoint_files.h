// What a training checkpoint directory holds besides its tensor data, and how one is committed:
// the one owner of the rank files, the training state and fingerprints in the manifest, and the
// commit (manifest last, then the rename; `latest` for the trainer's checkpoint_dir). The
// trainer (launch/train/checkpoint.cc), the read-only tools and the safetensors import
// (launch/convert/) all go through it. It knows neither the job, the model nor the ranks'
// communicator: a library of its own (mowe_checkpoint_files) that launch/convert links without
// the trainer. The model-agnostic format beneath it is runtime/checkpoint/ (docs/checkpoints.md).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "launch/train/proto/train_state.pb.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/proto/checkpoint.pb.h"
#include "runtime/checkpoint/writer.h"

namespace mowe::train {

// ---- rank files ------------------------------------------------------------------------------

// "rank-00003.pb" in the checkpoint directory: a framed file (runtime/checkpoint/framed_file.h)
// with this magic and version holding the rank's TrainStateProto, the manifest's training state
// plus the rank and world size of the job that wrote it. A resume at any world size reads the
// one of rank r mod (the writing job's size) and checks it against the manifest.
inline constexpr char kRankMagic[] = "MOWERANK";
inline constexpr uint32_t kRankVersion = 1;
std::string rank_file_name(int rank);
std::string rank_file_path(const std::string& dir, int rank);

// Writes <dir>/rank-NNNNN.pb: `state` with its rank and world size set.
void write_rank_file(const std::string& dir, int rank, int world_size, TrainStateProto state);

// Reads a rank file. A missing, truncated, foreign or damaged file throws FramedFileError naming
// it; nullopt when the payload is not a TrainStateProto (the caller says what that means to it).
std::optional<TrainStateProto> read_rank_file(const std::string& path);

// Whether a rank's own record holds the manifest's training state (step, dropout seed, loader
// position): the two are written by different processes.
bool agrees_with_manifest(const TrainStateProto& own, const TrainStateProto& manifest_state);

// ---- the manifest's training part ------------------------------------------------------------

// What a checkpoint must match to be loaded: the routing vocabulary, the routing table and the
// bucket layout (hashes; 0 for a model without MoWE layers).
struct Fingerprints {
  uint64_t routing_vocab = 0;
  uint64_t routing_table = 0;
  uint64_t bucket_layout = 0;
};

// Their names in the manifest.
inline constexpr char kFingerprintRoutingVocab[] = "routing_vocab";
inline constexpr char kFingerprintRoutingTable[] = "routing_table";
inline constexpr char kFingerprintBucketLayout[] = "bucket_layout";

// (name, value) in the order the manifest holds them and a load checks them, so that a refusal
// names the most specific cause first (another bucket layout also gives another routing table).
std::array<std::pair<const char*, uint64_t>, 3> fingerprint_entries(const Fingerprints& f);

// The value of the manifest's fingerprint `name` (the first of that name); nullopt without one.
std::optional<uint64_t> find_fingerprint(const checkpoint::CheckpointManifest& m,
                                         std::string_view name);

// The manifest's training state (user_state); nullopt when it does not parse or has no step.
std::optional<TrainStateProto> manifest_train_state(const checkpoint::CheckpointManifest& m);

// The training part of a manifest: step, resolved config text, fingerprints, the world size it
// is written at and the training state. The tensor records come from the layout at the commit.
checkpoint::CheckpointManifest training_manifest(const TrainStateProto& state,
                                                 const std::string& config_text,
                                                 const Fingerprints& fingerprints, int world_size);

// ---- committing ------------------------------------------------------------------------------

// The trainer's commit, by one rank once every rank has synced its data and written its rank
// file into tmp_dir (runtime/checkpoint/directory.h's begin_checkpoint): the layout's tensor
// records with the gathered chunk CRCs go into `manifest`, manifest.pb is written last, tmp_dir
// is renamed to <checkpoint_dir>/step-N and `latest` names it.
void commit_training_checkpoint(const std::string& checkpoint_dir, const std::string& tmp_dir,
                                const checkpoint::Layout& layout, const std::vector<uint32_t>& crcs,
                                checkpoint::CheckpointManifest manifest);

// A training checkpoint written by one process: the converters' one writer (mowe_convert
// import). The data files of the layout are created in <out_dir>.tmp-import; the caller writes
// every chunk; commit() writes the rank file of every rank of the manifest's world size (from its
// training state), the manifest last, and renames the directory to out_dir, so that out_dir is
// complete or absent. out_dir is any path, so no `latest` is written: name it
// <checkpoint_dir>/step-N for --resume auto to find it.
class OfflineCheckpointWriter {
 public:
  OfflineCheckpointWriter(const std::string& out_dir, const checkpoint::Layout& layout);
  ~OfflineCheckpointWriter();  // removes the temporary directory unless committed
  OfflineCheckpointWriter(const OfflineCheckpointWriter&) = delete;
  OfflineCheckpointWriter& operator=(const OfflineCheckpointWriter&) = delete;

  // As ChunkWriter's (runtime/checkpoint/writer.h).
  void write_chunks(const std::string& name, int64_t first_chunk, int64_t n, const void* data);
  void write_tensor(const std::string& name, const void* data);

  // `manifest`: everything but the tensor records (format version, step, config, fingerprints,
  // world size, creation time, training state), written as given. Every chunk must have been
  // written. Returns the checkpoint's path.
  std::string commit(checkpoint::CheckpointManifest manifest);

 private:
  std::string out_, tmp_;
  checkpoint::Layout layout_;
  std::optional<checkpoint::ChunkWriter> chunks_;
  bool committed_ = false;
};

}  // namespace mowe::train
