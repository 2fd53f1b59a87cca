// The safetensors file format (Hugging Face): an 8-byte little-endian header length N, N bytes of
// JSON {"<tensor>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"<key>": "<string>"}} padded with spaces, then the tensors' bytes (row-major,
// little-endian) with offsets relative to the end of the header.
//
// Reading validates everything a damaged or crafted file can get wrong before any tensor byte is
// read: the header length against the file size, the JSON, every dtype, shape and offset, that
// each tensor's byte size matches its shape, that the tensors lie inside the file, tile the data
// section exactly (no overlap, no gap, nothing after the last one). Every error is one line
// naming the file and the tensor. Writing streams: the header first, then each tensor's bytes in
// order, so no tensor needs to be in memory whole; the file appears atomically when complete.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mowe::safetensors {

enum class DType {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64
};

// "F32" -> DType::F32; false for a name the format does not define.
bool parse_dtype(std::string_view name, DType* dtype);
const char* dtype_name(DType dtype);
int64_t dtype_size(DType dtype);
// Every dtype name, comma-separated, for messages.
std::string dtype_names();

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // data_offsets: bytes from the start of the data section
  uint64_t bytes() const { return end - begin; }
  int64_t numel() const;
};

// Header lengths above this are refused without reading them (the reference implementation's
// limit): a damaged length never decides how much memory is taken.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct Header {
  uint64_t header_bytes = 0;        // N
  uint64_t data_start = 0;          // 8 + N: where the data section starts in the file
  uint64_t data_bytes = 0;          // the data section's size (file size - data_start)
  std::vector<TensorInfo> tensors;  // in data order
  std::map<std::string, std::string> metadata;

  const TensorInfo* find(const std::string& name) const;
  void index();  // builds the name index find() uses (parse_header calls it)

 private:
  std::unordered_map<std::string, size_t> by_name_;
};

// The header length N from the file's first 8 bytes (first8.size() < 8: the file is too short),
// checked against the file size and kMaxHeaderBytes. Errors begin with "<path>: ".
uint64_t parse_header_length(std::string_view first8, uint64_t file_size, const std::string& path);

// Parses and validates the N header bytes of a file of file_size bytes (see the top of this
// file). Errors begin with "<path>: " and name the tensor.
Header parse_header(std::string_view header_json, uint64_t file_size, const std::string& path);

// An open, validated safetensors file.
class Reader {
 public:
  explicit Reader(std::string path);
  Reader(Reader&& other) noexcept;
  Reader& operator=(Reader&& other) noexcept;
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  ~Reader();

  const std::string& path() const { return path_; }
  const Header& header() const { return header_; }
  const TensorInfo* find(const std::string& name) const { return header_.find(name); }

  // Bytes [offset, offset + n) of tensor t into dst. Error naming the file and the tensor when the
  // range lies outside the tensor or the file has become shorter since it was opened.
  void read(const TensorInfo& t, uint64_t offset, void* dst, uint64_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  Header header_;
};

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t bytes() const;  // numel * dtype_size
};

// The 8-byte length and the JSON header of a file holding `tensors` contiguously in this order,
// padded with spaces so that the data starts at a multiple of 8 bytes. Error for an empty,
// reserved or duplicate name, a negative dimension or a size overflow.
std::string build_header(const std::vector<TensorSpec>& tensors,
                         const std::map<std::string, std::string>& metadata);

// Streams one safetensors file: the constructor writes the header into "<path>.tmp", append()
// takes the tensors' bytes in order, finish() checks that every byte came, fsyncs and renames the
// file into place. Destroyed unfinished, it removes the temporary file.
class Writer {
 public:
  Writer(std::string path, const std::vector<TensorSpec>& tensors,
         const std::map<std::string, std::string>& metadata);
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer();

  void append(const void* data, uint64_t n);
  void finish();
  uint64_t file_bytes() const { return header_bytes_ + data_bytes_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t header_bytes_ = 0, data_bytes_ = 0, written_ = 0;
  bool finished_ = false;
};

// model.safetensors.index.json, as Hugging Face's sharded checkpoints have it:
// {"metadata": {"total_size": N, ...}, "weight_map": {"<tensor>": "<shard file>", ...}}.
struct Index {
  uint64_t total_size = 0;                        // bytes of tensor data over all shards
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::map<std::string, std::string> metadata;    // string entries besides total_size
};
std::string index_json(const Index& index);
// Error "<path>: ..." for malformed JSON, a missing or mistyped field, or a shard name that is
// not a plain file name (an index must not point outside its directory).
Index parse_index(std::string_view json, const std::string& path);

// Sharded-file names: "model-00001-of-00003.safetensors".
std::string shard_file_name(int shard, int num_shards);

}  // namespace mowe::safetensors
