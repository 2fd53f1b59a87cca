// mowe_convert export and import: a checkpoint directory to safetensors (one file, or shards with
// Hugging Face's model.safetensors.index.json) and back, streaming tensor by tensor (expert
// tensors in batches of whole expert blocks), so memory never holds the model. The export
// carries everything the checkpoint's manifest holds besides the tensors (step, resolved config,
// fingerprints, training state, the data-file layout) in the safetensors __metadata__, so that
// import rebuilds a checkpoint whose data files are byte for byte the original's and that
// mowe_pretrain --resume trains on. Names and layouts: launch/convert/names.h and
// docs/checkpoints.md.
//
// Implemented in export_safetensors.cc and import_safetensors.cc, with base64.h (the training
// state in the metadata), tensor_table.h (mowe.tensors), tensor_bytes.h (dtypes, transposes,
// batches of chunks) and routing_tensors.h (mowe.routing.*). Import writes the checkpoint through
// launch/train/checkpoint_files.h, the one owner of rank files and the commit.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mowe::convert {

// __metadata__ keys of an export (every shard holds them all).
inline constexpr char kMetaExportVersion[] = "mowe.export_version";
inline constexpr char kMetaTensors[] = "mowe.tensors";
inline constexpr char kMetaFiles[] = "mowe.files";
inline constexpr char kMetaStep[] = "mowe.step";
inline constexpr char kMetaConfig[] = "mowe.config";
inline constexpr char kMetaFingerprints[] = "mowe.fingerprints";
inline constexpr char kMetaTrainState[] = "mowe.train_state";
inline constexpr char kMetaWorldSize[] = "mowe.world_size";
inline constexpr char kMetaCreated[] = "mowe.created_unix_s";
inline constexpr char kMetaCheckpointVersion[] = "mowe.checkpoint_format_version";
inline constexpr char kMetaWeightsOnly[] = "mowe.weights_only";
inline constexpr int kExportVersion = 1;

// Routing-table tensors of an export of a model with MoWE layers.
inline constexpr char kRoutingBucketOfId[] = "mowe.routing.bucket_of_id";  // I32 [V_r]
inline constexpr char kRoutingExpertOfId[] = "mowe.routing.expert_of_id";  // I32 [V_r]
inline constexpr char kRoutingBuckets[] = "mowe.routing.buckets";          // I64 [B, 4]

struct ExportOptions {
  // A path ending in ".safetensors": that one file (no --shard-size). Otherwise a directory that
  // receives model.safetensors, or with shard_size the shards and model.safetensors.index.json.
  std::string out;
  uint64_t shard_size = 0;    // bytes of tensor data per shard; 0: one file
  bool weights_only = false;  // leave the optimizer state out (such an export cannot be imported)
  bool routing_table = true;  // needs the routing vocabulary of the checkpoint's config
  std::vector<std::string> overrides;  // --set, applied to the checkpoint's config (data paths)
};

struct ExportResult {
  std::vector<std::string> files;  // written, in order (the index last)
  int64_t tensors = 0;
  uint64_t bytes = 0;  // tensor data
};

ExportResult export_safetensors(const std::string& checkpoint_dir, const ExportOptions& options);

struct ImportResult {
  std::string dir;
  int64_t tensors = 0;
  int64_t bytes = 0;
  int64_t step = 0;
};

// `input`: one .safetensors file, or a model.safetensors.index.json whose shards lie beside it.
// Writes the checkpoint directory out_dir (which must not exist) atomically: complete or absent.
ImportResult import_safetensors(const std::string& input, const std::string& out_dir);

}  // namespace mowe::convert
