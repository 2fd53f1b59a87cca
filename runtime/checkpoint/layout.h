// Where every tensor of a checkpoint lives: data file, byte offset, CRC chunks. Planned from the
// model's tensor list alone, so every world size computes the same layout and any world size can
// read what another wrote. A tensor several processes write (expert weights, split by rows) is
// cut into chunks of whole rows, each starting on its own 4096-byte page; each chunk has a CRC.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/checkpoint/proto/checkpoint.pb.h"
#include "runtime/tensor.h"

namespace mowe::checkpoint {

// A Shape with these dimensions; throws Error beyond Shape::kMaxDims.
Shape make_shape(std::span<const int64_t> dims);

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::string file;        // data file name inside the checkpoint directory (no '/')
  int64_t chunk_rows = 0;  // rows per chunk; 0 = one chunk
};

class Layout {
 public:
  // Alignment of single-chunk tensors (cache line, SIMD loads of a mapped file).
  static constexpr int64_t kTensorAlign = 64;
  // Alignment of every chunk of a tensor declared chunked (chunk_rows > 0), and of the tensor
  // after one: two writers of different chunks never share a file-system page.
  static constexpr int64_t kChunkAlign = 4096;

  struct Entry {
    TensorSpec spec;   // spec.chunk_rows is normalised: rows per chunk (rows when single-chunk)
    int64_t rows = 0;  // shape[0], 1 for a scalar
    int64_t row_bytes = 0;  // bytes of one row
    int64_t offset = 0;     // of chunk 0 in spec.file
    int64_t chunk_stride = 0;
    int64_t num_chunks = 0;

    int64_t chunk_offset(int64_t c) const { return offset + c * chunk_stride; }
    int64_t chunk_first_row(int64_t c) const { return c * spec.chunk_rows; }
    int64_t chunk_num_rows(int64_t c) const;  // chunk_rows, less for the last chunk
    int64_t chunk_bytes(int64_t c) const { return chunk_num_rows(c) * row_bytes; }
    int64_t bytes() const { return rows * row_bytes; }
  };

  Layout() = default;

  // Assigns offsets file by file in the given order (see kTensorAlign, kChunkAlign). Throws Error
  // for a duplicate or empty name, a file name that is not a plain name, or a negative
  // chunk_rows.
  static Layout plan(std::vector<TensorSpec> specs);
  // The layout a manifest records, validated: known dtype, non-negative dimensions, consistent
  // chunk geometry and CRC count, every chunk inside its declared file, no two tensors
  // overlapping. Errors name the tensor (or file).
  static Layout from_manifest(const CheckpointManifest& manifest);

  const Entry& at(const std::string& name) const;  // Error naming the tensor when absent
  const Entry* find(const std::string& name) const;
  const std::vector<Entry>& entries() const { return entries_; }
  // (file, size in bytes), in order of first use.
  const std::vector<std::pair<std::string, int64_t>>& file_sizes() const { return files_; }

  // A global numbering of all chunks (tensor by tensor in entries() order), for callers that
  // exchange CRCs as one array.
  int64_t total_chunks() const { return total_chunks_; }
  int64_t chunk_index(const std::string& name, int64_t chunk) const;

  // Replaces the manifest's tensors and files with this layout, with one CRC per global chunk.
  void fill_manifest(CheckpointManifest* manifest,
                     std::span<const uint32_t> crcs_by_global_chunk) const;

 private:
  void index();  // fills by_name_, first_chunk_, total_chunks_ from entries_

  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, int64_t>> files_;
  std::unordered_map<std::string, size_t> by_name_;
  std::vector<int64_t> first_chunk_;  // global index of each entry's chunk 0
  int64_t total_chunks_ = 0;
};

// "f32" -> DType::F32 (the names dtype_name gives); false for an unknown name.
bool parse_dtype(const std::string& name, DType* dtype);

}  // namespace mowe::checkpoint
