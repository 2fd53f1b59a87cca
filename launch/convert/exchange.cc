#include "launch/convert/exchange.h"

#include <fcntl.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "data/routing_vocab.h"
#include "launch/convert/checkpoint_tools.h"
#include "launch/convert/names.h"
#include "launch/train/config_rules.h"
#include "model/dispatch_plan.h"
#include "model/dispatch_plan_file.h"
#include "model/routing_table.h"
#include "runtime/check.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/posix_io.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/checkpoint/writer.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "runtime/safetensors/safetensors.h"

namespace mowe::convert {
namespace {

namespace ckpt = mowe::checkpoint;
namespace st = mowe::safetensors;
namespace fs = std::filesystem;

// Tensors are moved in batches of whole chunks of at most this many bytes (a chunk larger than
// this, and a tensor that is transposed, is moved whole).
constexpr int64_t kBatchBytes = int64_t{64} << 20;

// ---- small encodings -------------------------------------------------------------------------

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const std::string& in) {
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += kBase64[(v >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (i + 1 < in.size()) v |= uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kBase64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool base64_decode(const std::string& in, std::string* out) {
  if (in.size() % 4 != 0) return false;
  out->clear();
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      const char* p = c == '\0' ? nullptr : std::strchr(kBase64, c);
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        ++pad;
        v <<= 6;
        continue;
      }
      if (!p || pad > 0) return false;
      v = (v << 6) | static_cast<uint32_t>(p - kBase64);
    }
    out->push_back(static_cast<char>((v >> 16) & 0xff));
    if (pad < 2) out->push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(v & 0xff));
  }
  return true;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    const size_t end = s.find(sep, begin);
    parts.push_back(s.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) return parts;
    begin = end + 1;
  }
}

// Non-empty lines of a metadata value.
std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  for (std::string& l : split(s, '\n'))
    if (!l.empty()) out.push_back(std::move(l));
  return out;
}

template <typename T>
bool parse_number(const std::string& text, T* out) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && p == end && !text.empty();
}

bool has_mowe(const config::Config& c) {
  return c.model().mowe().encoder_layers_size() + c.model().mowe().decoder_layers_size() > 0;
}

// ---- dtypes and layouts ----------------------------------------------------------------------

st::DType to_safetensors(DType d) {
  switch (d) {
    case DType::F32:
      return st::DType::F32;
    case DType::F64:
      return st::DType::F64;
    case DType::BF16:
      return st::DType::BF16;
    case DType::I32:
      return st::DType::I32;
  }
  throw Error("unknown dtype");
}

std::vector<int64_t> dims(const Shape& s) {
  std::vector<int64_t> d;
  for (int i = 0; i < s.ndim(); ++i) d.push_back(s[i]);
  return d;
}

// [rows, cols] -> [cols, rows] of elements of `elem` bytes.
void transpose(const char* src, int64_t rows, int64_t cols, int64_t elem, char* dst) {
  constexpr int64_t kTile = 32;  // cache-friendly tiles; the result is the same in any order
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c)
          std::memcpy(dst + (c * rows + r) * elem, src + (r * cols + c) * elem,
                      static_cast<size_t>(elem));
}

// Batches of whole chunks [first, first + count) of at most kBatchBytes (at least one chunk).
template <typename F>
void for_each_batch(const ckpt::Layout::Entry& e, F&& f) {
  for (int64_t c = 0; c < e.num_chunks;) {
    int64_t n = 1, bytes = e.chunk_bytes(c);
    while (c + n < e.num_chunks && bytes + e.chunk_bytes(c + n) <= kBatchBytes)
      bytes += e.chunk_bytes(c + n++);
    int64_t rows = 0;
    for (int64_t k = c; k < c + n; ++k) rows += e.chunk_num_rows(k);
    f(c, n, e.chunk_first_row(c), rows, bytes);
    c += n;
  }
}

// ---- the tensor table (metadata mowe.tensors) ------------------------------------------------

// One checkpoint tensor as the export records it: its manifest geometry and where it went.
struct TableRow {
  std::string name;  // in the checkpoint
  std::string export_name;
  DType dtype = DType::F32;
  Shape shape;  // in the checkpoint
  std::string file;
  int64_t offset = 0, chunk_rows = 0, chunk_stride = 0;
  bool transpose = false;
};

std::string table_line(const TableRow& r) {
  return fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n", r.name, r.export_name,
                     dtype_name(r.dtype), fmt::join(dims(r.shape), ","), r.file, r.offset,
                     r.chunk_rows, r.chunk_stride, r.transpose ? 1 : 0);
}

std::vector<TableRow> parse_table(const std::string& text, const std::string& file) {
  std::vector<TableRow> rows;
  int line_no = 0;
  for (const std::string& line : lines(text)) {
    ++line_no;
    auto bad = [&](const std::string& what) {
      return Error(
          fmt::format("{}: __metadata__ {} line {}: {}", file, kMetaTensors, line_no, what));
    };
    const std::vector<std::string> f = split(line, '\t');
    if (f.size() != 9) throw bad(fmt::format("{} fields, 9 expected", f.size()));
    TableRow r;
    r.name = f[0];
    r.export_name = f[1];
    if (r.name.empty() || r.export_name.empty()) throw bad("an empty tensor name");
    if (!ckpt::parse_dtype(f[2], &r.dtype)) throw bad(fmt::format("unknown dtype '{}'", f[2]));
    std::vector<int64_t> d;
    if (!f[3].empty()) {
      for (const std::string& x : split(f[3], ',')) {
        int64_t v;
        if (!parse_number(x, &v) || v < 0)
          throw bad(fmt::format("shape '{}' is not a list of dimensions", f[3]));
        d.push_back(v);
      }
    }
    if (d.size() > static_cast<size_t>(Shape::kMaxDims))
      throw bad(fmt::format("{} dimensions, at most {}", d.size(), Shape::kMaxDims));
    r.shape = ckpt::make_shape(d);
    r.file = f[4];
    if (!parse_number(f[5], &r.offset) || !parse_number(f[6], &r.chunk_rows) ||
        !parse_number(f[7], &r.chunk_stride))
      throw bad("offset, chunk_rows or chunk_stride is not an integer");
    if (f[8] != "0" && f[8] != "1") throw bad("the transpose flag is neither 0 nor 1");
    r.transpose = f[8] == "1";
    if (r.transpose && d.size() != 2) throw bad("only a matrix can be stored transposed");
    rows.push_back(std::move(r));
  }
  if (rows.empty())
    throw Error(fmt::format("{}: __metadata__ {} lists no tensor", file, kMetaTensors));
  return rows;
}

// ---- the routing table -----------------------------------------------------------------------

struct RoutingTensors {
  std::vector<int32_t> bucket_of, expert_of;
  std::vector<int64_t> buckets;  // [B, 4]: routing ids, blocks, experts per block, expert d_ff
};

uint64_t fingerprint(const ckpt::CheckpointManifest& m, const std::string& name, bool* found) {
  for (const auto& f : m.fingerprints()) {
    if (f.name() == name) {
      *found = true;
      return f.value();
    }
  }
  *found = false;
  return 0;
}

RoutingTensors routing_tensors(const config::Config& cfg, const ckpt::CheckpointManifest& m,
                               const std::string& dir) {
  const std::string& path = cfg.data().routing_vocab();
  std::error_code ec;
  if (path.empty() || !fs::exists(path, ec))
    throw Error(fmt::format(
        "the routing table of checkpoint {} is built from its routing vocabulary '{}' "
        "(data.routing_vocab in its config), which does not exist here: pass it with --set "
        "data.routing_vocab=PATH, or export without the table (--no-routing-table)",
        dir, path));
  const data::RoutingVocab vocab = data::RoutingVocab::load(path);
  bool found;
  const uint64_t vocab_want = fingerprint(m, "routing_vocab", &found);
  const uint64_t vocab_hash = model::routing_vocab_hash(vocab);
  if (found && vocab_hash != vocab_want)
    throw Error(fmt::format(
        "routing vocabulary {} has hash {:016x}, checkpoint {} was trained with {:016x}: pass the "
        "vocabulary it was trained with (--set data.routing_vocab=PATH) or --no-routing-table",
        path, vocab_hash, dir, vocab_want));
  const auto& mowe = cfg.model().mowe();
  const model::RoutingTable table = model::RoutingTable::build(
      mowe, model::padded_frequencies(vocab, path, mowe.routing_vocab_size()));
  const uint64_t table_want = fingerprint(m, "routing_table", &found);
  if (found && model::routing_table_hash(table) != table_want)
    throw Error(fmt::format(
        "the routing table built from {} has hash {:016x}, checkpoint {} was trained with "
        "{:016x}: pass the routing vocabulary it was trained with (--set "
        "data.routing_vocab=PATH) or --no-routing-table",
        path, model::routing_table_hash(table), dir, table_want));
  RoutingTensors r{table.bucket_array(), table.expert_array(), {}};
  for (const model::BucketLayout& b : table.buckets())
    r.buckets.insert(r.buckets.end(),
                     {b.num_routing_ids, b.num_blocks, b.experts_per_block, b.expert_d_ff});
  return r;
}

// ---- export ----------------------------------------------------------------------------------

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

// ---- import ----------------------------------------------------------------------------------

struct Source {
  size_t reader;
  const st::TensorInfo* info;
};

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

// Reads tensor data of a safetensors tensor in one piece into a vector.
template <typename T>
std::vector<T> read_all(const st::Reader& r, const st::TensorInfo& t) {
  std::vector<T> v(t.bytes() / sizeof(T));
  r.read(t, 0, v.data(), t.bytes());
  return v;
}

void check_routing(const std::vector<st::Reader>& readers,
                   const std::map<std::string, Source>& where, const ckpt::CheckpointManifest& m) {
  const bool any = where.count(kRoutingBucketOfId) || where.count(kRoutingExpertOfId) ||
                   where.count(kRoutingBuckets);
  if (!any) return;
  for (const char* name : {kRoutingBucketOfId, kRoutingExpertOfId, kRoutingBuckets})
    if (!where.count(name))
      throw Error(fmt::format("{}: routing-table tensor '{}' is missing (the others are there)",
                              readers[0].path(), name));
  const Source& b = where.at(kRoutingBucketOfId);
  const Source& e = where.at(kRoutingExpertOfId);
  const Source& l = where.at(kRoutingBuckets);
  auto file_of = [&](const Source& s) { return readers[s.reader].path(); };
  if (b.info->dtype != st::DType::I32 || b.info->shape.size() != 1)
    throw Error(
        fmt::format("{}: tensor '{}' must be I32 [routing ids]", file_of(b), kRoutingBucketOfId));
  if (e.info->dtype != st::DType::I32 || e.info->shape != b.info->shape)
    throw Error(fmt::format("{}: tensor '{}' must be I32 of the shape of '{}'", file_of(e),
                            kRoutingExpertOfId, kRoutingBucketOfId));
  if (l.info->dtype != st::DType::I64 || l.info->shape.size() != 2 || l.info->shape[1] != 4)
    throw Error(
        fmt::format("{}: tensor '{}' must be I64 [buckets, 4]", file_of(l), kRoutingBuckets));
  const auto bucket_of = read_all<int32_t>(readers[b.reader], *b.info);
  const auto expert_of = read_all<int32_t>(readers[e.reader], *e.info);
  const auto layout = read_all<int64_t>(readers[l.reader], *l.info);
  std::vector<model::BucketLayout> buckets;
  std::vector<std::vector<int64_t>> loads;
  for (size_t i = 0; i + 3 < layout.size(); i += 4) {
    for (size_t k = 1; k < 4; ++k)
      if (layout[i + k] < 1 || layout[i + k] > (int64_t{1} << 30))
        throw Error(fmt::format("{}: tensor '{}' row {} is not a bucket layout", file_of(l),
                                kRoutingBuckets, i / 4));
    buckets.push_back({layout[i], static_cast<int32_t>(layout[i + 1]),
                       static_cast<int32_t>(layout[i + 2]), static_cast<int32_t>(layout[i + 3])});
    loads.emplace_back(static_cast<size_t>(buckets.back().num_experts()), 0);
  }
  std::vector<int64_t> ids_in(buckets.size(), 0);
  for (size_t id = 0; id < bucket_of.size(); ++id) {
    const int32_t bk = bucket_of[id], ex = expert_of[id];
    if (bk == -1 && ex == -1) continue;
    if (bk < 0 || static_cast<size_t>(bk) >= buckets.size() || ex < 0 ||
        ex >= buckets[static_cast<size_t>(bk)].num_experts())
      throw Error(fmt::format("{}: routing id {} has bucket {} and expert {}, outside the table",
                              file_of(b), id, bk, ex));
    ++ids_in[static_cast<size_t>(bk)];
  }
  for (size_t k = 0; k < buckets.size(); ++k)
    if (ids_in[k] != buckets[k].num_routing_ids)
      throw Error(fmt::format("{}: bucket {} declares {} routing ids, {} map to it", file_of(l), k,
                              buckets[k].num_routing_ids, ids_in[k]));
  const model::RoutingTable table(buckets, bucket_of, expert_of, loads);
  bool found;
  const uint64_t want = fingerprint(m, "routing_table", &found);
  const uint64_t got = model::routing_table_hash(table);
  if (found && got != want)
    throw Error(fmt::format(
        "{}: the routing-table tensors hash to {:016x}, the checkpoint's routing_table fingerprint "
        "is {:016x}: the trainer routes with its own table, so edited routing tensors would be "
        "ignored; restore them from the export",
        file_of(b), got, want));
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
  const ckpt::CheckpointManifest& m = reader.manifest();

  std::vector<ExportItem> items;
  std::string table;
  std::set<std::string> names;
  for (const ckpt::Layout::Entry& e : reader.layout().entries()) {
    if (options.weights_only && !optimizer_slot(e.spec.name).empty()) continue;
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
    table += table_line({e.spec.name, x.name, e.spec.dtype, e.spec.shape, e.spec.file, e.offset,
                         e.spec.chunk_rows, e.chunk_stride, x.transpose});
  }

  if (options.routing_table) {
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
    if (has_mowe(cfg)) {
      const RoutingTensors r = routing_tensors(cfg, m, checkpoint_dir);
      const auto v = static_cast<int64_t>(r.bucket_of.size());
      const auto b = static_cast<int64_t>(r.buckets.size() / 4);
      items.push_back({{kRoutingBucketOfId, st::DType::I32, {v}}, nullptr, bytes_of(r.bucket_of)});
      items.push_back({{kRoutingExpertOfId, st::DType::I32, {v}}, nullptr, bytes_of(r.expert_of)});
      items.push_back({{kRoutingBuckets, st::DType::I64, {b, 4}}, nullptr, bytes_of(r.buckets)});
    }
  }

  std::map<std::string, std::string> meta;
  meta["format"] = "pt";  // what Hugging Face's loaders expect of a PyTorch-layout file
  meta[kMetaExportVersion] = std::to_string(kExportVersion);
  meta[kMetaCheckpointVersion] = std::to_string(m.format_version());
  meta[kMetaStep] = std::to_string(m.step());
  meta[kMetaConfig] = m.config();
  meta[kMetaWorldSize] = std::to_string(m.world_size());
  meta[kMetaCreated] = std::to_string(m.created_unix_s());
  meta[kMetaTrainState] = base64_encode(m.user_state());
  meta[kMetaWeightsOnly] = options.weights_only ? "1" : "0";
  std::string fps, files;
  for (const auto& f : m.fingerprints()) fps += fmt::format("{}={:016x}\n", f.name(), f.value());
  for (const auto& [name, size] : reader.layout().file_sizes())
    files += fmt::format("{}\t{}\n", name, size);
  meta[kMetaFingerprints] = fps;
  meta[kMetaFiles] = files;
  meta[kMetaTensors] = table;

  // Shards: tensors in order, a new shard when the next tensor would overflow the current one
  // (a tensor larger than the shard size has a shard of its own, as Hugging Face does).
  std::vector<std::vector<const ExportItem*>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const ExportItem& it : items) {
    const uint64_t bytes = it.spec.bytes();
    if (options.shard_size > 0 && !shards.back().empty() && in_shard + bytes > options.shard_size) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&it);
    in_shard += bytes;
    total += bytes;
  }
  const int num = static_cast<int>(shards.size());
  std::vector<std::string> paths;
  fs::path dir;
  if (to_file) {
    dir = fs::path(options.out).parent_path();
    paths.push_back(options.out);
  } else {
    dir = options.out;
    for (int s = 1; s <= num; ++s)
      paths.push_back((dir / (options.shard_size > 0 ? st::shard_file_name(s, num)
                                                     : std::string("model.safetensors")))
                          .string());
  }
  std::error_code ec;
  if (!dir.empty()) fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  if (options.shard_size > 0) {
    // Shards of an earlier export with another shard count would mix with these.
    std::set<std::string> ours;
    for (const std::string& p : paths) ours.insert(fs::path(p).filename().string());
    for (const auto& f : fs::directory_iterator(dir, ec)) {
      const std::string n = f.path().filename().string();
      if (is_shard_name(n) && !ours.count(n))
        throw Error(
            fmt::format("{} holds {} from another export: remove the old shards or "
                        "choose another --out",
                        dir.string(), n));
    }
  }

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

ImportResult import_safetensors(const std::string& input, const std::string& out_dir) {
  if (out_dir.empty()) throw Error("import needs --out CHECKPOINT_DIR");
  std::error_code ec;
  if (fs::exists(out_dir, ec))
    throw Error(
        fmt::format("{} exists: import writes a new checkpoint directory; remove it or "
                    "choose another --out",
                    out_dir));
  // The files: one safetensors file, or the shards an index names.
  std::vector<std::string> paths;
  std::optional<st::Index> index;
  if (input.size() > 5 && input.compare(input.size() - 5, 5, ".json") == 0) {
    index = st::parse_index(read_file(input, "safetensors index"), input);
    if (index->weight_map.empty()) throw Error(fmt::format("{}: the weight_map is empty", input));
    std::set<std::string> files;
    for (const auto& [name, file] : index->weight_map) files.insert(file);
    const fs::path dir = fs::path(input).parent_path();
    for (const std::string& f : files) paths.push_back((dir / f).string());
  } else {
    paths.push_back(input);
  }
  std::vector<st::Reader> readers;
  for (const std::string& p : paths) readers.emplace_back(p);

  std::map<std::string, Source> where;
  for (size_t k = 0; k < readers.size(); ++k) {
    for (const st::TensorInfo& t : readers[k].header().tensors) {
      auto [it, added] = where.emplace(t.name, Source{k, &t});
      if (!added)
        throw Error(fmt::format("tensor '{}' is in both {} and {}", t.name,
                                readers[it->second.reader].path(), readers[k].path()));
    }
  }
  if (index) {
    for (const auto& [name, file] : index->weight_map) {
      auto it = where.find(name);
      if (it == where.end() || fs::path(readers[it->second.reader].path()).filename() != file)
        throw Error(fmt::format("{}: the index puts tensor '{}' in {}, which does not hold it",
                                input, name, file));
    }
    for (const auto& [name, src] : where)
      if (!index->weight_map.count(name))
        throw Error(fmt::format("{}: tensor '{}' is not in the index {}",
                                readers[src.reader].path(), name, input));
  }
  const std::map<std::string, std::string>& meta = readers[0].header().metadata;
  const std::string& first = readers[0].path();
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
                    first, readers[k].path(), key));
  }

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
  train::TrainStateProto state;
  if (!state.ParseFromString(state_bytes) || !state.has_step() || state.step() != m.step())
    throw Error(fmt::format("{}: __metadata__ {} is not the training state of step {}", first,
                            kMetaTrainState, m.step()));
  m.set_user_state(state_bytes);
  for (const std::string& line : lines(meta_value(meta, kMetaFingerprints, first))) {
    const size_t eq = line.find('=');
    uint64_t value = 0;
    const std::string hex = eq == std::string::npos ? "" : line.substr(eq + 1);
    auto [p, err] = std::from_chars(hex.data(), hex.data() + hex.size(), value, 16);
    if (eq == std::string::npos || eq == 0 || hex.empty() || err != std::errc() ||
        p != hex.data() + hex.size())
      throw Error(fmt::format("{}: __metadata__ {} line '{}' is not name=hex", first,
                              kMetaFingerprints, line));
    auto* f = m.add_fingerprints();
    f->set_name(line.substr(0, eq));
    f->set_value(value);
  }
  for (const std::string& line : lines(meta_value(meta, kMetaFiles, first))) {
    const std::vector<std::string> f = split(line, '\t');
    int64_t size;
    if (f.size() != 2 || !parse_number(f[1], &size))
      throw Error(fmt::format("{}: __metadata__ {} line '{}' is not 'file<TAB>size'", first,
                              kMetaFiles, line));
    auto* d = m.add_files();
    d->set_name(f[0]);
    d->set_size(size);
  }
  const std::vector<TableRow> table = parse_table(meta_value(meta, kMetaTensors, first), first);
  for (const TableRow& r : table) {
    auto* t = m.add_tensors();
    t->set_name(r.name);
    t->set_dtype(dtype_name(r.dtype));
    for (int64_t d : dims(r.shape)) t->add_shape(d);
    t->set_file(r.file);
    t->set_offset(r.offset);
    t->set_chunk_rows(r.chunk_rows);
    t->set_chunk_stride(r.chunk_stride);
    const int64_t rows = r.shape.ndim() == 0 ? 1 : r.shape[0];
    // As many CRC slots as the geometry has chunks; Layout::from_manifest checks the geometry.
    const int64_t chunks = rows == 0 || r.chunk_rows < 1 ? 1 : (rows - 1) / r.chunk_rows + 1;
    if (chunks > (int64_t{1} << 24))
      throw Error(fmt::format("{}: __metadata__ {}: tensor '{}' would have {} chunks", first,
                              kMetaTensors, r.name, chunks));
    for (int64_t c = 0; c < chunks; ++c) t->add_chunk_crc32c(0);
  }
  ckpt::Layout layout;
  try {
    layout = ckpt::Layout::from_manifest(m);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: __metadata__ {} and {} do not describe a valid checkpoint: {}",
                            first, kMetaTensors, kMetaFiles, e.what()));
  }

  // Every checkpoint tensor present with its dtype and (stored) shape; nothing else but the
  // routing table.
  std::vector<Source> sources;
  std::set<std::string> expected = {kRoutingBucketOfId, kRoutingExpertOfId, kRoutingBuckets};
  for (const TableRow& r : table) {
    auto it = where.find(r.export_name);
    if (it == where.end())
      throw Error(fmt::format(
          "{}: no tensor '{}' (the checkpoint's '{}'): every tensor of the export is needed; a "
          "renamed or dropped tensor cannot be imported",
          paths.size() == 1 ? first : input, r.export_name, r.name));
    const st::TensorInfo& t = *it->second.info;
    std::vector<int64_t> want = dims(r.shape);
    if (r.transpose) std::swap(want[0], want[1]);
    if (t.dtype != to_safetensors(r.dtype) || t.shape != want)
      throw Error(fmt::format("{}: tensor '{}' is {} [{}], the checkpoint's '{}' needs {} [{}]",
                              readers[it->second.reader].path(), r.export_name,
                              st::dtype_name(t.dtype), fmt::join(t.shape, ", "), r.name,
                              st::dtype_name(to_safetensors(r.dtype)), fmt::join(want, ", ")));
    expected.insert(r.export_name);
    sources.push_back(it->second);
  }
  for (const auto& [name, src] : where)
    if (!expected.count(name))
      throw Error(
          fmt::format("{}: unexpected tensor '{}': it is not one of the exported "
                      "checkpoint's tensors (renamed?)",
                      readers[src.reader].path(), name));
  check_routing(readers, where, m);

  // Write <out>.tmp-import, then rename: the checkpoint is complete or absent.
  const fs::path out = fs::path(out_dir).lexically_normal();
  const std::string tmp = out.string() + ".tmp-import";
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", tmp, ec.message()));
  ImportResult result;
  try {
    for (const auto& [file, size] : layout.file_sizes())
      ckpt::PosixFile(tmp + "/" + file, O_WRONLY | O_CREAT | O_TRUNC).truncate(size);
    ckpt::ChunkWriter writer(tmp, layout);
    std::vector<char> buffer;
    for (size_t i = 0; i < table.size(); ++i) {
      const TableRow& r = table[i];
      const ckpt::Layout::Entry& e = layout.at(r.name);
      const st::Reader& rd = readers[sources[i].reader];
      const st::TensorInfo& t = *sources[i].info;
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
      ++result.tensors;
      result.bytes += e.bytes();
    }
    writer.sync();
    MOWE_CHECK(std::all_of(writer.written().begin(), writer.written().end(),
                           [](uint8_t w) { return w == 1; }),
               "import wrote {} of {} chunks",
               std::count(writer.written().begin(), writer.written().end(), 1),
               writer.written().size());
    // Each rank's copy of the training state, as the trainer writes them: a resume at any world
    // size reads rank r mod (the writing job's size).
    for (int rank = 0; rank < m.world_size(); ++rank) {
      train::TrainStateProto own = state;
      own.set_rank(rank);
      own.set_world_size(m.world_size());
      ckpt::write_framed_file(tmp + "/" + rank_file_name(rank), kRankMagic, kRankVersion,
                              own.SerializeAsString());
    }
    layout.fill_manifest(&m, writer.crcs());
    // Written last, as the trainer does: a directory with a manifest is complete.
    ckpt::write_framed_file(tmp + "/" + ckpt::kManifestFile, ckpt::kManifestMagic,
                            ckpt::kFormatVersion, m.SerializeAsString());
    fsync_directory(tmp);
    fs::rename(tmp, out, ec);
    if (ec) throw Error(fmt::format("cannot rename {} to {}: {}", tmp, out.string(), ec.message()));
    const fs::path parent = out.parent_path();
    fsync_directory(parent.empty() ? "." : parent.string());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  result.dir = out.string();
  result.step = m.step();
  return result;
}

}  // namespace mowe::convert
