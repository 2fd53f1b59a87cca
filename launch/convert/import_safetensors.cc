// mowe_convert import: safetensors written by export back to a checkpoint directory whose files
// are byte for byte the original's (launch/convert/safetensors_io.h). The checkpoint is written
// through launch/train/checkpoint_files.h's OfflineCheckpointWriter, which owns the rank files
// and the commit.
#include <charconv>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "launch/convert/base64.h"
#include "launch/convert/routing_tensors.h"
#include "launch/convert/safetensors_io.h"
#include "launch/convert/tensor_bytes.h"
#include "launch/convert/tensor_table.h"
#include "launch/train/checkpoint_files.h"
#include "runtime/check.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/files.h"
#include "runtime/safetensors/safetensors.h"

namespace mowe::convert {
namespace {

namespace ckpt = mowe::checkpoint;
namespace st = mowe::safetensors;
namespace fs = std::filesystem;

const std::string& meta_value(const std::map<std::string, std::string>& meta, const char* key,
                              const std::string& file) {
  auto it = meta.find(key);
  if (it == meta.end())
    throw Error(fmt::format(
        "{}: no __metadata__ entry '{}': import needs a file written by mowe_convert export with "
        "its metadata (a tool that rewrites the file must keep it, e.g. safetensors' "
        "save_file(tensors, path, metadata=safe_open(original).metadata()))",
        file, key));
  return it->second;
}

// The safetensors files of an import and where each of their tensors lies.
struct Inputs {
  std::vector<std::string> paths;
  std::vector<st::Reader> readers;
  std::map<std::string, TensorSource> where;
};

// One safetensors file, or the shards an index names (which must hold exactly its tensors).
Inputs open_inputs(const std::string& input) {
  Inputs in;
  std::optional<st::Index> index;
  if (input.size() > 5 && input.compare(input.size() - 5, 5, ".json") == 0) {
    index = st::parse_index(read_file(input, "safetensors index"), input);
    if (index->weight_map.empty()) throw Error(fmt::format("{}: the weight_map is empty", input));
    std::set<std::string> files;
    for (const auto& [name, file] : index->weight_map) files.insert(file);
    const fs::path dir = fs::path(input).parent_path();
    for (const std::string& f : files) in.paths.push_back((dir / f).string());
  } else {
    in.paths.push_back(input);
  }
  for (const std::string& p : in.paths) in.readers.emplace_back(p);

  for (size_t k = 0; k < in.readers.size(); ++k) {
    for (const st::TensorInfo& t : in.readers[k].header().tensors) {
      auto [it, added] = in.where.emplace(t.name, TensorSource{k, &t});
      if (!added)
        throw Error(fmt::format("tensor '{}' is in both {} and {}", t.name,
                                in.readers[it->second.reader].path(), in.readers[k].path()));
    }
  }
  if (index) {
    for (const auto& [name, file] : index->weight_map) {
      auto it = in.where.find(name);
      if (it == in.where.end() || fs::path(in.readers[it->second.reader].path()).filename() != file)
        throw Error(fmt::format("{}: the index puts tensor '{}' in {}, which does not hold it",
                                input, name, file));
    }
    for (const auto& [name, src] : in.where)
      if (!index->weight_map.count(name))
        throw Error(fmt::format("{}: tensor '{}' is not in the index {}",
                                in.readers[src.reader].path(), name, input));
  }
  return in;
}

// Shards of one export carry the same __metadata__.
void check_same_export(const std::vector<st::Reader>& readers) {
  const std::map<std::string, std::string>& meta = readers[0].header().metadata;
  for (size_t k = 1; k < readers.size(); ++k) {
    if (readers[k].header().metadata == meta) continue;
    std::string key = "(a key present in only one)";
    for (const auto& [kk, v] : meta) {
      auto it = readers[k].header().metadata.find(kk);
      if (it == readers[k].header().metadata.end() || it->second != v) {
        key = kk;
        break;
      }
    }
    throw Error(
        fmt::format("{} and {} come from different exports: their __metadata__ differ "
                    "at '{}'",
                    readers[0].path(), readers[k].path(), key));
  }
}

// An export this build reads, made with the optimizer state.
void check_importable(const std::map<std::string, std::string>& meta, const std::string& first) {
  int export_version = 0;
  if (!parse_number(meta_value(meta, kMetaExportVersion, first), &export_version))
    throw Error(fmt::format("{}: __metadata__ {} is not a number", first, kMetaExportVersion));
  if (export_version > kExportVersion)
    throw Error(
        fmt::format("{}: export format version {}, this build reads up to {}: use a newer "
                    "mowe_convert",
                    first, export_version, kExportVersion));
  if (meta_value(meta, kMetaWeightsOnly, first) != "0")
    throw Error(fmt::format(
        "{}: exported with --weights-only: without the optimizer state the trainer cannot resume "
        "from it; export again without --weights-only",
        first));
}

void add_fingerprints(const std::map<std::string, std::string>& meta, const std::string& first,
                      ckpt::CheckpointManifest* m) {
  for (const std::string& line : nonempty_lines(meta_value(meta, kMetaFingerprints, first))) {
    const size_t eq = line.find('=');
    uint64_t value = 0;
    const std::string hex = eq == std::string::npos ? "" : line.substr(eq + 1);
    auto [p, err] = std::from_chars(hex.data(), hex.data() + hex.size(), value, 16);
    if (eq == std::string::npos || eq == 0 || hex.empty() || err != std::errc() ||
        p != hex.data() + hex.size())
      throw Error(fmt::format("{}: __metadata__ {} line '{}' is not name=hex", first,
                              kMetaFingerprints, line));
    auto* f = m->add_fingerprints();
    f->set_name(line.substr(0, eq));
    f->set_value(value);
  }
}

void add_files(const std::map<std::string, std::string>& meta, const std::string& first,
               ckpt::CheckpointManifest* m) {
  for (const std::string& line : nonempty_lines(meta_value(meta, kMetaFiles, first))) {
    const std::vector<std::string> f = split_text(line, '\t');
    int64_t size;
    if (f.size() != 2 || !parse_number(f[1], &size))
      throw Error(fmt::format("{}: __metadata__ {} line '{}' is not 'file<TAB>size'", first,
                              kMetaFiles, line));
    auto* d = m->add_files();
    d->set_name(f[0]);
    d->set_size(size);
  }
}

// The tensor records of the table, with as many (zero) CRC slots as the geometry has chunks;
// Layout::from_manifest checks the geometry.
void add_tensor_records(const std::vector<TableRow>& table, const std::string& first,
                        ckpt::CheckpointManifest* m) {
  for (const TableRow& r : table) {
    auto* t = m->add_tensors();
    t->set_name(r.name);
    t->set_dtype(dtype_name(r.dtype));
    for (int64_t d : dims(r.shape)) t->add_shape(d);
    t->set_file(r.file);
    t->set_offset(r.offset);
    t->set_chunk_rows(r.chunk_rows);
    t->set_chunk_stride(r.chunk_stride);
    const int64_t rows = r.shape.ndim() == 0 ? 1 : r.shape[0];
    const int64_t chunks = rows == 0 || r.chunk_rows < 1 ? 1 : (rows - 1) / r.chunk_rows + 1;
    if (chunks > (int64_t{1} << 24))
      throw Error(fmt::format("{}: __metadata__ {}: tensor '{}' would have {} chunks", first,
                              kMetaTensors, r.name, chunks));
    for (int64_t c = 0; c < chunks; ++c) t->add_chunk_crc32c(0);
  }
}

// The manifest the export carried in its metadata (its tensor records without CRCs), and the
// tensor table.
ckpt::CheckpointManifest manifest_from_metadata(const std::map<std::string, std::string>& meta,
                                                const std::string& first,
                                                std::vector<TableRow>* table) {
  ckpt::CheckpointManifest m;
  auto number = [&](const char* key) {
    int64_t v;
    if (!parse_number(meta_value(meta, key, first), &v))
      throw Error(fmt::format("{}: __metadata__ {} is '{}', not an integer", first, key,
                              meta_value(meta, key, first)));
    return v;
  };
  m.set_format_version(ckpt::kFormatVersion);
  m.set_step(number(kMetaStep));
  m.set_config(meta_value(meta, kMetaConfig, first));
  m.set_world_size(static_cast<int32_t>(number(kMetaWorldSize)));
  m.set_created_unix_s(number(kMetaCreated));
  if (m.world_size() < 1 || m.world_size() > (1 << 20))
    throw Error(fmt::format("{}: __metadata__ {} is {}, not a world size", first, kMetaWorldSize,
                            m.world_size()));
  std::string state_bytes;
  if (!base64_decode(meta_value(meta, kMetaTrainState, first), &state_bytes))
    throw Error(fmt::format("{}: __metadata__ {} is not base64", first, kMetaTrainState));
  m.set_user_state(state_bytes);  // the exported bytes as they are
  const std::optional<train::TrainStateProto> state = train::manifest_train_state(m);
  if (!state || state->step() != m.step())
    throw Error(fmt::format("{}: __metadata__ {} is not the training state of step {}", first,
                            kMetaTrainState, m.step()));
  add_fingerprints(meta, first, &m);
  add_files(meta, first, &m);
  *table = parse_table(meta_value(meta, kMetaTensors, first), first);
  add_tensor_records(*table, first, &m);
  return m;
}

// Every checkpoint tensor present with its dtype and (stored) shape; nothing else but the
// routing table. Returns where each row of the table lies.
std::vector<TensorSource> match_tensors(const std::vector<TableRow>& table, const Inputs& in,
                                        const std::string& input) {
  std::vector<TensorSource> sources;
  std::set<std::string> expected = {kRoutingBucketOfId, kRoutingExpertOfId, kRoutingBuckets};
  for (const TableRow& r : table) {
    auto it = in.where.find(r.export_name);
    if (it == in.where.end())
      throw Error(fmt::format(
          "{}: no tensor '{}' (the checkpoint's '{}'): every tensor of the export is needed; a "
          "renamed or dropped tensor cannot be imported",
          in.paths.size() == 1 ? in.readers[0].path() : input, r.export_name, r.name));
    const st::TensorInfo& t = *it->second.info;
    std::vector<int64_t> want = dims(r.shape);
    if (r.transpose) std::swap(want[0], want[1]);
    if (t.dtype != to_safetensors(r.dtype) || t.shape != want)
      throw Error(fmt::format("{}: tensor '{}' is {} [{}], the checkpoint's '{}' needs {} [{}]",
                              in.readers[it->second.reader].path(), r.export_name,
                              st::dtype_name(t.dtype), fmt::join(t.shape, ", "), r.name,
                              st::dtype_name(to_safetensors(r.dtype)), fmt::join(want, ", ")));
    expected.insert(r.export_name);
    sources.push_back(it->second);
  }
  for (const auto& [name, src] : in.where)
    if (!expected.count(name))
      throw Error(
          fmt::format("{}: unexpected tensor '{}': it is not one of the exported "
                      "checkpoint's tensors (renamed?)",
                      in.readers[src.reader].path(), name));
  return sources;
}

// Copies one tensor into place: whole when it was transposed, else in batches of whole chunks.
int64_t copy_tensor(const TableRow& r, const ckpt::Layout::Entry& e, const st::Reader& rd,
                    const st::TensorInfo& t, train::OfflineCheckpointWriter& writer,
                    std::vector<char>& buffer) {
  if (r.transpose) {
    buffer.resize(static_cast<size_t>(e.bytes()));
    rd.read(t, 0, buffer.data(), t.bytes());
    std::vector<char> back(buffer.size());
    transpose(buffer.data(), e.spec.shape[1], e.spec.shape[0],
              static_cast<int64_t>(dtype_size(e.spec.dtype)), back.data());
    writer.write_tensor(r.name, back.data());
  } else {
    for_each_batch(e, [&](int64_t chunk, int64_t n, int64_t first_row, int64_t, int64_t bytes) {
      buffer.resize(static_cast<size_t>(bytes));
      rd.read(t, static_cast<uint64_t>(first_row * e.row_bytes), buffer.data(),
              static_cast<uint64_t>(bytes));
      writer.write_chunks(r.name, chunk, n, buffer.data());
    });
  }
  return e.bytes();
}

}  // namespace

ImportResult import_safetensors(const std::string& input, const std::string& out_dir) {
  if (out_dir.empty()) throw Error("import needs --out CHECKPOINT_DIR");
  std::error_code ec;
  if (fs::exists(out_dir, ec))
    throw Error(
        fmt::format("{} exists: import writes a new checkpoint directory; remove it or "
                    "choose another --out",
                    out_dir));
  const Inputs in = open_inputs(input);
  check_same_export(in.readers);
  const std::map<std::string, std::string>& meta = in.readers[0].header().metadata;
  const std::string& first = in.readers[0].path();
  check_importable(meta, first);
  std::vector<TableRow> table;
  const ckpt::CheckpointManifest m = manifest_from_metadata(meta, first, &table);
  ckpt::Layout layout;
  try {
    layout = ckpt::Layout::from_manifest(m);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: __metadata__ {} and {} do not describe a valid checkpoint: {}",
                            first, kMetaTensors, kMetaFiles, e.what()));
  }
  const std::vector<TensorSource> sources = match_tensors(table, in, input);
  check_routing_tensors(in.readers, in.where, m);

  // Complete or absent: the writer removes its temporary directory unless committed.
  train::OfflineCheckpointWriter writer(out_dir, layout);
  ImportResult result;
  std::vector<char> buffer;
  for (size_t i = 0; i < table.size(); ++i) {
    result.bytes += copy_tensor(table[i], layout.at(table[i].name), in.readers[sources[i].reader],
                                *sources[i].info, writer, buffer);
    ++result.tensors;
  }
  result.dir = writer.commit(m);
  result.step = m.step();
  return result;
}

}  // namespace mowe::convert
