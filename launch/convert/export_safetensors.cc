// mowe_convert export: a checkpoint directory to safetensors (launch/convert/safetensors_io.h).
#include <filesystem>
#include <map>
#include <set>

#include "launch/convert/base64.h"
#include "launch/convert/names.h"
#include "launch/convert/routing_tensors.h"
#include "launch/convert/safetensors_io.h"
#include "launch/convert/tensor_bytes.h"
#include "launch/convert/tensor_table.h"
#include "launch/train/config_rules.h"
#include "model/mowe_layers.h"
#include "runtime/check.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "runtime/safetensors/safetensors.h"

namespace mowe::convert {
namespace {

namespace ckpt = mowe::checkpoint;
namespace st = mowe::safetensors;
namespace fs = std::filesystem;

struct ExportItem {
  st::TensorSpec spec;
  const ckpt::Layout::Entry* entry = nullptr;  // a checkpoint tensor, or
  std::string data;                            // bytes held here (the routing table)
  bool transpose = false;
};

void write_item(const ckpt::CheckpointReader& reader, const ExportItem& item, st::Writer& w) {
  if (!item.entry) {
    w.append(item.data.data(), item.data.size());
    return;
  }
  const ckpt::Layout::Entry& e = *item.entry;
  std::vector<char> buffer;
  if (item.transpose) {
    buffer.resize(static_cast<size_t>(e.bytes()));
    reader.read_tensor(e.spec.name, buffer.data());
    std::vector<char> t(buffer.size());
    transpose(buffer.data(), e.spec.shape[0], e.spec.shape[1],
              static_cast<int64_t>(dtype_size(e.spec.dtype)), t.data());
    w.append(t.data(), t.size());
    return;
  }
  for_each_batch(e, [&](int64_t, int64_t, int64_t first_row, int64_t rows, int64_t bytes) {
    buffer.resize(static_cast<size_t>(bytes));
    reader.read_rows(e.spec.name, first_row, rows, buffer.data());
    w.append(buffer.data(), static_cast<uint64_t>(bytes));
  });
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

bool is_shard_name(const std::string& name) {
  // model-00001-of-00004.safetensors
  if (name.size() != 32 || name.rfind("model-", 0) != 0 || name.substr(11, 4) != "-of-" ||
      name.substr(20) != ".safetensors")
    return false;
  for (size_t i : {6, 7, 8, 9, 10, 15, 16, 17, 18, 19})
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

// The checkpoint's tensors under their export names (without the optimizer state for
// weights_only), and the tensor table recording where each went.
std::vector<ExportItem> checkpoint_items(const ckpt::CheckpointReader& reader,
                                         const std::string& checkpoint_dir, bool weights_only,
                                         std::string* table) {
  std::vector<ExportItem> items;
  std::set<std::string> names;
  for (const ckpt::Layout::Entry& e : reader.layout().entries()) {
    if (weights_only && !optimizer_slot(e.spec.name).empty()) continue;
    if (e.spec.name.find_first_of("\t\n\r") != std::string::npos)
      throw Error(fmt::format("checkpoint {}: tensor name '{}' holds a tab or line break",
                              checkpoint_dir, e.spec.name));
    ExportName x = export_name(e.spec.name);
    if (x.transpose && e.spec.shape.ndim() != 2)
      throw Error(fmt::format("checkpoint {}: tensor '{}' is {}, a matrix was expected",
                              checkpoint_dir, e.spec.name, e.spec.shape.str()));
    if (!names.insert(x.name).second)
      throw Error(fmt::format("checkpoint {}: two tensors would be exported as '{}'",
                              checkpoint_dir, x.name));
    ExportItem item;
    item.spec = {x.name, to_safetensors(e.spec.dtype), dims(e.spec.shape)};
    if (x.transpose) std::swap(item.spec.shape[0], item.spec.shape[1]);
    item.entry = &e;
    item.transpose = x.transpose;
    items.push_back(std::move(item));
    *table += table_line({e.spec.name, x.name, e.spec.dtype, e.spec.shape, e.spec.file, e.offset,
                          e.spec.chunk_rows, e.chunk_stride, x.transpose});
  }
  return items;
}

// The routing-table tensors, when the checkpoint's model has MoWE layers.
void add_routing_items(const ckpt::CheckpointManifest& m, const std::string& checkpoint_dir,
                       const ExportOptions& options, std::vector<ExportItem>* items) {
  config::Config cfg;
  try {
    cfg = train::load_config_text(m.config(), checkpoint_dir + "/manifest.pb (config)",
                                  options.overrides);
  } catch (const Error& e) {
    throw Error(
        fmt::format("{} (the routing table is built from this config; "
                    "--no-routing-table exports without it)",
                    e.what()));
  }
  if (!model::has_mowe_layers(cfg)) return;
  const RoutingTensors r = routing_tensors(cfg, m, checkpoint_dir);
  const auto v = static_cast<int64_t>(r.bucket_of.size());
  const auto b = static_cast<int64_t>(r.buckets.size() / 4);
  items->push_back({{kRoutingBucketOfId, st::DType::I32, {v}}, nullptr, bytes_of(r.bucket_of)});
  items->push_back({{kRoutingExpertOfId, st::DType::I32, {v}}, nullptr, bytes_of(r.expert_of)});
  items->push_back({{kRoutingBuckets, st::DType::I64, {b, 4}}, nullptr, bytes_of(r.buckets)});
}

// Everything of the manifest besides the tensor data, for import (docs/checkpoints.md).
std::map<std::string, std::string> export_metadata(const ckpt::CheckpointReader& reader,
                                                   const std::string& table, bool weights_only) {
  const ckpt::CheckpointManifest& m = reader.manifest();
  std::map<std::string, std::string> meta;
  meta["format"] = "pt";  // what Hugging Face's loaders expect of a PyTorch-layout file
  meta[kMetaExportVersion] = std::to_string(kExportVersion);
  meta[kMetaCheckpointVersion] = std::to_string(m.format_version());
  meta[kMetaStep] = std::to_string(m.step());
  meta[kMetaConfig] = m.config();
  meta[kMetaWorldSize] = std::to_string(m.world_size());
  meta[kMetaCreated] = std::to_string(m.created_unix_s());
  meta[kMetaTrainState] = base64_encode(m.user_state());
  meta[kMetaWeightsOnly] = weights_only ? "1" : "0";
  std::string fps, files;
  for (const auto& f : m.fingerprints()) fps += fmt::format("{}={:016x}\n", f.name(), f.value());
  for (const auto& [name, size] : reader.layout().file_sizes())
    files += fmt::format("{}\t{}\n", name, size);
  meta[kMetaFingerprints] = fps;
  meta[kMetaFiles] = files;
  meta[kMetaTensors] = table;
  return meta;
}

// Tensors in order, a new shard when the next tensor would overflow the current one (a tensor
// larger than the shard size has a shard of its own, as Hugging Face does). *total: all bytes.
std::vector<std::vector<const ExportItem*>> plan_shards(const std::vector<ExportItem>& items,
                                                        uint64_t shard_size, uint64_t* total) {
  std::vector<std::vector<const ExportItem*>> shards(1);
  uint64_t in_shard = 0;
  *total = 0;
  for (const ExportItem& it : items) {
    const uint64_t bytes = it.spec.bytes();
    if (shard_size > 0 && !shards.back().empty() && in_shard + bytes > shard_size) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&it);
    in_shard += bytes;
    *total += bytes;
  }
  return shards;
}

// The files to write (num shards) and the directory that receives them, created; refuses a
// directory holding shards of an earlier export with another shard count (they would mix).
std::vector<std::string> output_paths(const ExportOptions& options, bool to_file, int num,
                                      fs::path* dir) {
  std::vector<std::string> paths;
  if (to_file) {
    *dir = fs::path(options.out).parent_path();
    paths.push_back(options.out);
  } else {
    *dir = options.out;
    for (int s = 1; s <= num; ++s)
      paths.push_back((*dir / (options.shard_size > 0 ? st::shard_file_name(s, num)
                                                      : std::string("model.safetensors")))
                          .string());
  }
  std::error_code ec;
  if (!dir->empty()) fs::create_directories(*dir, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", dir->string(), ec.message()));
  if (options.shard_size > 0) {
    std::set<std::string> ours;
    for (const std::string& p : paths) ours.insert(fs::path(p).filename().string());
    for (const auto& f : fs::directory_iterator(*dir, ec)) {
      const std::string n = f.path().filename().string();
      if (is_shard_name(n) && !ours.count(n))
        throw Error(
            fmt::format("{} holds {} from another export: remove the old shards or "
                        "choose another --out",
                        dir->string(), n));
    }
  }
  return paths;
}

}  // namespace

ExportResult export_safetensors(const std::string& checkpoint_dir, const ExportOptions& options) {
  if (options.out.empty())
    throw Error("export needs --out PATH (a .safetensors file or a directory)");
  const bool to_file = options.out.size() > 12 &&
                       options.out.compare(options.out.size() - 12, 12, ".safetensors") == 0;
  if (to_file && options.shard_size > 0)
    throw Error(
        fmt::format("--shard-size writes a directory of shards and "
                    "model.safetensors.index.json: give --out a directory, not {}",
                    options.out));
  const ckpt::CheckpointReader reader(checkpoint_dir);
  std::string table;
  std::vector<ExportItem> items =
      checkpoint_items(reader, checkpoint_dir, options.weights_only, &table);
  if (options.routing_table) add_routing_items(reader.manifest(), checkpoint_dir, options, &items);
  const std::map<std::string, std::string> meta =
      export_metadata(reader, table, options.weights_only);

  uint64_t total = 0;
  const std::vector<std::vector<const ExportItem*>> shards =
      plan_shards(items, options.shard_size, &total);
  const int num = static_cast<int>(shards.size());
  fs::path dir;
  const std::vector<std::string> paths = output_paths(options, to_file, num, &dir);

  ExportResult result;
  st::Index index;
  index.total_size = total;
  for (int s = 0; s < num; ++s) {
    std::vector<st::TensorSpec> specs;
    for (const ExportItem* it : shards[s]) specs.push_back(it->spec);
    st::Writer w(paths[s], specs, meta);
    for (const ExportItem* it : shards[s]) {
      write_item(reader, *it, w);
      index.weight_map[it->spec.name] = fs::path(paths[s]).filename().string();
      ++result.tensors;
    }
    w.finish();
    result.files.push_back(paths[s]);
  }
  if (options.shard_size > 0) {
    const std::string index_path = (dir / "model.safetensors.index.json").string();
    write_file_atomically(index_path, st::index_json(index));
    result.files.push_back(index_path);
  }
  result.bytes = total;
  return result;
}

}  // namespace mowe::convert
