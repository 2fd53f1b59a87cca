#include "launch/train/checkpoint_files.h"

#include <fcntl.h>

#include <algorithm>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/checkpoint/directory.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/posix_io.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/files.h"

namespace mowe::train {

namespace ckpt = mowe::checkpoint;
namespace fs = std::filesystem;

std::string rank_file_name(int rank) {
  return fmt::format("rank-{:05d}.pb", rank);
}

std::string rank_file_path(const std::string& dir, int rank) {
  return dir + "/" + rank_file_name(rank);
}

void write_rank_file(const std::string& dir, int rank, int world_size, TrainStateProto state) {
  state.set_rank(rank);
  state.set_world_size(world_size);
  ckpt::write_framed_file(rank_file_path(dir, rank), kRankMagic, kRankVersion,
                          state.SerializeAsString());
}

std::optional<TrainStateProto> read_rank_file(const std::string& path) {
  TrainStateProto own;
  if (!own.ParseFromString(ckpt::read_framed_file(path, kRankMagic, kRankVersion)))
    return std::nullopt;
  return own;
}

bool agrees_with_manifest(const TrainStateProto& own, const TrainStateProto& manifest_state) {
  return own.step() == manifest_state.step() &&
         own.dropout_seed() == manifest_state.dropout_seed() &&
         own.loader().SerializeAsString() == manifest_state.loader().SerializeAsString();
}

std::array<std::pair<const char*, uint64_t>, 3> fingerprint_entries(const Fingerprints& f) {
  return {{{kFingerprintRoutingVocab, f.routing_vocab},
           {kFingerprintBucketLayout, f.bucket_layout},
           {kFingerprintRoutingTable, f.routing_table}}};
}

std::optional<uint64_t> find_fingerprint(const ckpt::CheckpointManifest& m, std::string_view name) {
  for (const auto& f : m.fingerprints())
    if (f.name() == name) return f.value();
  return std::nullopt;
}

std::optional<TrainStateProto> manifest_train_state(const ckpt::CheckpointManifest& m) {
  TrainStateProto s;
  if (!s.ParseFromString(m.user_state()) || !s.has_step()) return std::nullopt;
  return s;
}

ckpt::CheckpointManifest training_manifest(const TrainStateProto& state,
                                           const std::string& config_text,
                                           const Fingerprints& fingerprints, int world_size) {
  ckpt::CheckpointManifest m;
  m.set_step(state.step());
  m.set_config(config_text);
  for (const auto& [name, value] : fingerprint_entries(fingerprints)) {
    auto* fp = m.add_fingerprints();
    fp->set_name(name);
    fp->set_value(value);
  }
  m.set_world_size(world_size);
  m.set_user_state(state.SerializeAsString());
  return m;
}

void commit_training_checkpoint(const std::string& checkpoint_dir, const std::string& tmp_dir,
                                const ckpt::Layout& layout, const std::vector<uint32_t>& crcs,
                                ckpt::CheckpointManifest manifest) {
  layout.fill_manifest(&manifest, crcs);
  ckpt::commit_checkpoint(checkpoint_dir, tmp_dir, manifest.step(), manifest);
}

OfflineCheckpointWriter::OfflineCheckpointWriter(const std::string& out_dir,
                                                 const ckpt::Layout& layout)
    : out_(fs::path(out_dir).lexically_normal().string()),
      tmp_(out_ + ".tmp-import"),
      layout_(layout) {
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  fs::create_directories(tmp_, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", tmp_, ec.message()));
  // From here on the destructor removes tmp_ when anything fails.
  try {
    for (const auto& [file, size] : layout_.file_sizes())
      ckpt::PosixFile(tmp_ + "/" + file, O_WRONLY | O_CREAT | O_TRUNC).truncate(size);
  } catch (...) {
    fs::remove_all(tmp_, ec);
    throw;
  }
  chunks_.emplace(tmp_, layout_);
}

OfflineCheckpointWriter::~OfflineCheckpointWriter() {
  if (committed_) return;
  chunks_.reset();  // closes the data files before they are removed
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void OfflineCheckpointWriter::write_chunks(const std::string& name, int64_t first_chunk, int64_t n,
                                           const void* data) {
  chunks_->write_chunks(name, first_chunk, n, data);
}

void OfflineCheckpointWriter::write_tensor(const std::string& name, const void* data) {
  chunks_->write_tensor(name, data);
}

std::string OfflineCheckpointWriter::commit(ckpt::CheckpointManifest manifest) {
  ckpt::ChunkWriter& chunks = *chunks_;
  chunks.sync();
  const std::vector<uint8_t>& written = chunks.written();
  MOWE_CHECK(std::all_of(written.begin(), written.end(), [](uint8_t w) { return w == 1; }),
             "{}: {} of {} chunks written before the commit", tmp_,
             std::count(written.begin(), written.end(), 1), written.size());
  const std::optional<TrainStateProto> state = manifest_train_state(manifest);
  MOWE_CHECK(state.has_value(), "{}: the manifest to commit holds no training state", tmp_);
  // Every rank's copy, as the trainer's ranks write them: a resume at any world size reads rank
  // r mod (the writing job's size).
  for (int rank = 0; rank < manifest.world_size(); ++rank)
    write_rank_file(tmp_, rank, manifest.world_size(), *state);
  layout_.fill_manifest(&manifest, chunks.crcs());
  // Written last, as the trainer does: a directory with a manifest is complete.
  ckpt::write_framed_file(tmp_ + "/" + ckpt::kManifestFile, ckpt::kManifestMagic,
                          ckpt::kFormatVersion, manifest.SerializeAsString());
  fsync_directory(tmp_);
  std::error_code ec;
  fs::rename(tmp_, out_, ec);
  if (ec) throw Error(fmt::format("cannot rename {} to {}: {}", tmp_, out_, ec.message()));
  committed_ = true;
  const fs::path parent = fs::path(out_).parent_path();
  fsync_directory(parent.empty() ? "." : parent.string());
  return out_;
}

}  // namespace mowe::train
