#include "runtime/checkpoint/layout.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "runtime/check.h"

namespace mowe::checkpoint {
namespace {

int64_t round_up(int64_t v, int64_t align) {
  return (v + align - 1) / align * align;
}

// a * b, or an Error naming the tensor when it does not fit in int64 (only a crafted or damaged
// manifest gets there).
int64_t checked_mul(int64_t a, int64_t b, const std::string& tensor) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw Error(fmt::format("tensor '{}': its size overflows 64 bits", tensor));
  return r;
}

int64_t checked_add(int64_t a, int64_t b, const std::string& tensor) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    throw Error(fmt::format("tensor '{}': its extent overflows 64 bits", tensor));
  return r;
}

// A data file is a plain name inside the checkpoint directory: nothing may point outside it or
// replace the manifest.
void check_file_name(const std::string& file, const std::string& context) {
  if (file.empty() || file == "." || file == ".." || file == "manifest.pb" ||
      file.find('/') != std::string::npos || file.find('\0') != std::string::npos)
    throw Error(
        fmt::format("{}: '{}' is not a valid data file name (a plain file name other "
                    "than manifest.pb)",
                    context, file));
}

// The geometry of a tensor from its spec; chunk_rows as requested (0 = one chunk).
Layout::Entry make_entry(TensorSpec spec) {
  Layout::Entry e;
  const Shape& shape = spec.shape;
  e.rows = shape.ndim() == 0 ? 1 : shape[0];
  int64_t row_elems = 1;
  for (int i = 1; i < shape.ndim(); ++i) row_elems = checked_mul(row_elems, shape[i], spec.name);
  e.row_bytes = checked_mul(row_elems, static_cast<int64_t>(dtype_size(spec.dtype)), spec.name);
  checked_mul(e.rows, e.row_bytes, spec.name);
  if (spec.chunk_rows < 0)
    throw Error(fmt::format("tensor '{}': chunk_rows {} is negative", spec.name, spec.chunk_rows));
  if (spec.chunk_rows == 0 || spec.chunk_rows >= e.rows) spec.chunk_rows = e.rows;
  e.num_chunks = e.rows == 0 ? 1 : (e.rows - 1) / spec.chunk_rows + 1;
  e.chunk_stride = e.num_chunks == 1 ? e.rows * e.row_bytes
                                     : round_up(spec.chunk_rows * e.row_bytes, Layout::kChunkAlign);
  e.spec = std::move(spec);
  return e;
}

// One past the last byte of the tensor in its file.
int64_t entry_end(const Layout::Entry& e) {
  const int64_t last = e.num_chunks - 1;
  return checked_add(
      e.offset,
      checked_add(checked_mul(last, e.chunk_stride, e.spec.name), e.chunk_bytes(last), e.spec.name),
      e.spec.name);
}

}  // namespace

Shape make_shape(std::span<const int64_t> dims) {
  if (dims.size() > static_cast<size_t>(Shape::kMaxDims))
    throw Error(
        fmt::format("{} dimensions: at most {} are supported", dims.size(), Shape::kMaxDims));
  Shape s;
  switch (dims.size()) {
    case 0:
      s = Shape{};
      break;
    case 1:
      s = Shape{0};
      break;
    case 2:
      s = Shape{0, 0};
      break;
    case 3:
      s = Shape{0, 0, 0};
      break;
    case 4:
      s = Shape{0, 0, 0, 0};
      break;
    case 5:
      s = Shape{0, 0, 0, 0, 0};
      break;
    default:
      s = Shape{0, 0, 0, 0, 0, 0};
      break;
  }
  for (size_t i = 0; i < dims.size(); ++i) s = s.with_dim(static_cast<int>(i), dims[i]);
  return s;
}

bool parse_dtype(const std::string& name, DType* dtype) {
  for (DType d : {DType::F32, DType::F64, DType::BF16, DType::I32}) {
    if (name == dtype_name(d)) {
      *dtype = d;
      return true;
    }
  }
  return false;
}

int64_t Layout::Entry::chunk_num_rows(int64_t c) const {
  return std::min(spec.chunk_rows, rows - c * spec.chunk_rows);
}

Layout Layout::plan(std::vector<TensorSpec> specs) {
  Layout layout;
  std::map<std::string, size_t> file_index;  // into layout.files_
  // Files whose last tensor is multi-chunk: the next tensor starts on a new page, so it never
  // shares one with the last chunk (possibly written by another process).
  std::map<std::string, bool> after_multi;
  for (TensorSpec& spec : specs) {
    if (spec.name.empty()) throw Error("a checkpoint tensor has an empty name");
    check_file_name(spec.file, fmt::format("tensor '{}'", spec.name));
    // Declared chunked: written chunk by chunk by several processes, even when it has only one.
    const bool chunked = spec.chunk_rows > 0;
    Entry e = make_entry(std::move(spec));
    auto [it, added] = file_index.emplace(e.spec.file, layout.files_.size());
    if (added) layout.files_.emplace_back(e.spec.file, 0);
    int64_t& file_end = layout.files_[it->second].second;
    bool& page_aligned = after_multi[e.spec.file];
    e.offset = round_up(file_end, chunked || page_aligned ? kChunkAlign : kTensorAlign);
    page_aligned = chunked;
    file_end = entry_end(e);
    layout.entries_.push_back(std::move(e));
  }
  layout.index();
  return layout;
}

Layout Layout::from_manifest(const CheckpointManifest& manifest) {
  Layout layout;
  std::map<std::string, int64_t> file_size;
  for (const DataFileRecord& f : manifest.files()) {
    check_file_name(f.name(), "the list of data files");
    if (f.size() < 0)
      throw Error(fmt::format("data file '{}': negative size {}", f.name(), f.size()));
    if (!file_size.emplace(f.name(), f.size()).second)
      throw Error(fmt::format("data file '{}' is listed twice", f.name()));
    layout.files_.emplace_back(f.name(), f.size());
  }
  // (file, begin, end, tensor) of every non-empty tensor, to find overlaps.
  std::vector<std::tuple<std::string, int64_t, int64_t, std::string>> extents;
  for (int i = 0; i < manifest.tensors_size(); ++i) {
    const TensorRecord& r = manifest.tensors(i);
    const std::string& name = r.name();
    if (name.empty()) throw Error(fmt::format("tensor #{} has no name", i));
    TensorSpec spec;
    spec.name = name;
    if (!parse_dtype(r.dtype(), &spec.dtype))
      throw Error(fmt::format("tensor '{}': unknown dtype '{}'", name, r.dtype()));
    if (r.shape_size() > Shape::kMaxDims)
      throw Error(fmt::format("tensor '{}': {} dimensions, at most {} are supported", name,
                              r.shape_size(), Shape::kMaxDims));
    for (int64_t d : r.shape())
      if (d < 0) throw Error(fmt::format("tensor '{}': negative dimension {}", name, d));
    spec.shape = make_shape({r.shape().data(), static_cast<size_t>(r.shape_size())});
    spec.file = r.file();
    check_file_name(spec.file, fmt::format("tensor '{}'", name));
    auto size = file_size.find(spec.file);
    if (size == file_size.end())
      throw Error(fmt::format("tensor '{}': data file '{}' is not listed", name, spec.file));

    Entry e = make_entry(spec);  // for rows and row_bytes; the geometry below is the record's
    e.spec.chunk_rows = r.chunk_rows();
    if (e.rows == 0 ? e.spec.chunk_rows != 0
                    : (e.spec.chunk_rows < 1 || e.spec.chunk_rows > e.rows))
      throw Error(fmt::format("tensor '{}': chunk_rows {} does not fit its {} rows", name,
                              e.spec.chunk_rows, e.rows));
    e.num_chunks = e.rows == 0 ? 1 : (e.rows - 1) / e.spec.chunk_rows + 1;
    e.chunk_stride = r.chunk_stride();
    if (e.chunk_stride < (e.num_chunks > 1 ? e.chunk_bytes(0) : 0))
      throw Error(fmt::format("tensor '{}': chunk_stride {} is smaller than a chunk ({} bytes)",
                              name, e.chunk_stride, e.chunk_bytes(0)));
    if (r.chunk_crc32c_size() != e.num_chunks)
      throw Error(fmt::format("tensor '{}': {} chunk CRCs for {} chunks", name,
                              r.chunk_crc32c_size(), e.num_chunks));
    e.offset = r.offset();
    if (e.offset < 0) throw Error(fmt::format("tensor '{}': negative offset {}", name, e.offset));
    const int64_t end = entry_end(e);
    if (end > size->second)
      throw Error(fmt::format("tensor '{}': bytes {}..{} lie beyond the end of '{}' ({} bytes)",
                              name, e.offset, end, spec.file, size->second));
    if (end > e.offset) extents.emplace_back(spec.file, e.offset, end, name);
    layout.entries_.push_back(std::move(e));
  }
  std::sort(extents.begin(), extents.end());
  for (size_t i = 1; i < extents.size(); ++i) {
    const auto& [file, begin, end, name] = extents[i];
    const auto& [prev_file, prev_begin, prev_end, prev_name] = extents[i - 1];
    if (file == prev_file && begin < prev_end)
      throw Error(fmt::format("tensors '{}' and '{}' overlap in '{}'", prev_name, name, file));
  }
  layout.index();  // throws on duplicate names
  return layout;
}

void Layout::index() {
  by_name_.clear();
  first_chunk_.clear();
  total_chunks_ = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!by_name_.emplace(entries_[i].spec.name, i).second)
      throw Error(
          fmt::format("tensor '{}' appears twice in the checkpoint", entries_[i].spec.name));
    first_chunk_.push_back(total_chunks_);
    total_chunks_ += entries_[i].num_chunks;
  }
}

const Layout::Entry* Layout::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const Layout::Entry& Layout::at(const std::string& name) const {
  const Entry* e = find(name);
  if (!e) throw Error(fmt::format("the checkpoint has no tensor '{}'", name));
  return *e;
}

int64_t Layout::chunk_index(const std::string& name, int64_t chunk) const {
  const Entry& e = at(name);
  MOWE_CHECK(0 <= chunk && chunk < e.num_chunks, "tensor '{}' has {} chunks, asked for chunk {}",
             name, e.num_chunks, chunk);
  return first_chunk_[&e - entries_.data()] + chunk;
}

void Layout::fill_manifest(CheckpointManifest* manifest,
                           std::span<const uint32_t> crcs_by_global_chunk) const {
  MOWE_CHECK(static_cast<int64_t>(crcs_by_global_chunk.size()) == total_chunks_,
             "fill_manifest: {} CRCs for {} chunks", crcs_by_global_chunk.size(), total_chunks_);
  manifest->clear_tensors();
  manifest->clear_files();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    TensorRecord* r = manifest->add_tensors();
    r->set_name(e.spec.name);
    r->set_dtype(dtype_name(e.spec.dtype));
    for (int d = 0; d < e.spec.shape.ndim(); ++d) r->add_shape(e.spec.shape[d]);
    r->set_file(e.spec.file);
    r->set_offset(e.offset);
    r->set_chunk_rows(e.spec.chunk_rows);
    r->set_chunk_stride(e.chunk_stride);
    for (int64_t c = 0; c < e.num_chunks; ++c)
      r->add_chunk_crc32c(crcs_by_global_chunk[first_chunk_[i] + c]);
  }
  for (const auto& [name, size] : files_) {
    DataFileRecord* f = manifest->add_files();
    f->set_name(name);
    f->set_size(size);
  }
}

}  // namespace mowe::checkpoint
