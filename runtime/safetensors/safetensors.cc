#include "runtime/safetensors/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/safetensors/json.h"

namespace mowe::safetensors {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  int64_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},           {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},         {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},         {DType::U32, "U32", 4},         {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},         {DType::I64, "I64", 8},         {DType::U64, "U64", 8},
};

const DTypeInfo& info(DType d) {
  for (const DTypeInfo& i : kDTypes)
    if (i.dtype == d) return i;
  throw Error("safetensors: unknown dtype enumerator");
}

// A name from a file, for a one-line message: quoted, control characters escaped, bounded.
std::string name_text(std::string_view name) {
  if (name.size() > 200) return json_quote(std::string(name.substr(0, 200)) + "...");
  return json_quote(name);
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string errno_text() {
  return std::strerror(errno);
}

// numel * dtype size of a shape, or false on overflow (only a crafted header gets there).
bool byte_size(const std::vector<int64_t>& shape, DType dtype, uint64_t* out) {
  uint64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  return !__builtin_mul_overflow(n, static_cast<uint64_t>(dtype_size(dtype)), out);
}

void check_plain_file_name(const std::string& name, const std::string& context) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw Error(fmt::format("{}: {} is not a plain file name in the index's directory", context,
                            name_text(name)));
}

TensorInfo parse_tensor(const std::string& name, const Json& v, const std::string& path) {
  const std::string where = fmt::format("{}: tensor {}", path, name_text(name));
  if (name.empty()) throw Error(fmt::format("{}: a tensor has an empty name", path));
  if (!v.is(Json::Kind::Object))
    throw Error(fmt::format("{} is {}, not an object with dtype, shape and data_offsets", where,
                            json_describe(v)));
  for (const auto& [key, unused] : v.members)
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(fmt::format("{}: unknown field {} (a tensor has dtype, shape and data_offsets)",
                              where, name_text(key)));
  const Json* dtype = v.find("dtype");
  const Json* shape = v.find("shape");
  const Json* offsets = v.find("data_offsets");
  if (!dtype || !shape || !offsets)
    throw Error(fmt::format("{}: no {}", where,
                            !dtype   ? "dtype"
                            : !shape ? "shape"
                                     : "data_offsets"));
  TensorInfo t;
  t.name = name;
  if (!dtype->is(Json::Kind::String))
    throw Error(fmt::format("{}: dtype is {}, not a string", where, json_describe(*dtype)));
  if (!parse_dtype(dtype->text, &t.dtype))
    throw Error(fmt::format("{}: unknown dtype {} (the format defines {})", where,
                            name_text(dtype->text), dtype_names()));
  if (!shape->is(Json::Kind::Array))
    throw Error(fmt::format("{}: shape is {}, not an array", where, json_describe(*shape)));
  for (size_t i = 0; i < shape->items.size(); ++i) {
    int64_t d;
    if (!json_to_index(shape->items[i], &d))
      throw Error(fmt::format("{}: shape[{}] is {}, not a dimension (an integer >= 0)", where, i,
                              json_describe(shape->items[i])));
    t.shape.push_back(d);
  }
  if (!offsets->is(Json::Kind::Array) || offsets->items.size() != 2)
    throw Error(fmt::format("{}: data_offsets is {}, not [begin, end]", where,
                            offsets->is(Json::Kind::Array)
                                ? fmt::format("an array of {}", offsets->items.size())
                                : json_describe(*offsets)));
  int64_t be[2];
  for (int i = 0; i < 2; ++i)
    if (!json_to_index(offsets->items[i], &be[i]))
      throw Error(fmt::format("{}: data_offsets[{}] is {}, not a byte offset (an integer >= 0)",
                              where, i, json_describe(offsets->items[i])));
  t.begin = static_cast<uint64_t>(be[0]);
  t.end = static_cast<uint64_t>(be[1]);
  if (t.begin > t.end)
    throw Error(
        fmt::format("{}: data_offsets [{}, {}] end before they begin", where, t.begin, t.end));
  uint64_t bytes;
  if (!byte_size(t.shape, t.dtype, &bytes))
    throw Error(fmt::format("{}: shape {} of {} overflows 64 bits", where, shape_str(t.shape),
                            dtype->text));
  if (bytes != t.end - t.begin)
    throw Error(fmt::format("{}: shape {} of {} is {} bytes, data_offsets [{}, {}] hold {}", where,
                            shape_str(t.shape), dtype->text, bytes, t.begin, t.end,
                            t.end - t.begin));
  return t;
}

}  // namespace

bool parse_dtype(std::string_view name, DType* dtype) {
  for (const DTypeInfo& i : kDTypes) {
    if (name == i.name) {
      *dtype = i.dtype;
      return true;
    }
  }
  return false;
}

const char* dtype_name(DType dtype) {
  return info(dtype).name;
}

int64_t dtype_size(DType dtype) {
  return info(dtype).size;
}

std::string dtype_names() {
  std::string s;
  for (const DTypeInfo& i : kDTypes) s += (s.empty() ? "" : ", ") + std::string(i.name);
  return s;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // bounded: the header check proved numel * size fits
  return n;
}

uint64_t TensorSpec::bytes() const {
  uint64_t b = 0;
  if (!byte_size(shape, dtype, &b))
    throw Error(
        fmt::format("tensor {}: shape {} overflows 64 bits", name_text(name), shape_str(shape)));
  return b;
}

const TensorInfo* Header::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors[it->second];
}

void Header::index() {
  by_name_.clear();
  for (size_t i = 0; i < tensors.size(); ++i) by_name_.emplace(tensors[i].name, i);
}

uint64_t parse_header_length(std::string_view first8, uint64_t file_size, const std::string& path) {
  if (first8.size() < 8 || file_size < 8)
    throw Error(fmt::format(
        "{}: {} bytes: too short for a safetensors file (an 8-byte header length, then the "
        "header): the file is truncated or not a safetensors file",
        path, file_size));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<unsigned char>(first8[i])} << (8 * i);
  if (n == 0)
    throw Error(
        fmt::format("{}: header length 0: not a safetensors file (the header is a JSON "
                    "object of at least 2 bytes)",
                    path));
  if (n > kMaxHeaderBytes)
    throw Error(fmt::format(
        "{}: header length {} is beyond the {}-byte limit of the format: the file is damaged or "
        "not a safetensors file",
        path, n, kMaxHeaderBytes));
  if (n > file_size - 8)
    throw Error(fmt::format(
        "{}: header length {} is larger than the rest of the file ({} bytes): the file is "
        "truncated or not a safetensors file",
        path, n, file_size - 8));
  return n;
}

Header parse_header(std::string_view header_json, uint64_t file_size, const std::string& path) {
  Header h;
  h.header_bytes = header_json.size();
  if (file_size < 8 || header_json.size() > file_size - 8)
    throw Error(fmt::format("{}: the header ({} bytes) does not fit in the file ({} bytes)", path,
                            header_json.size(), file_size));
  h.data_start = 8 + h.header_bytes;
  h.data_bytes = file_size - h.data_start;
  if (header_json.empty() || header_json[0] != '{')
    throw Error(
        fmt::format("{}: the header does not begin with '{{': not a safetensors file, or "
                    "a damaged one",
                    path));
  Json root;
  try {
    root = parse_json(header_json);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: header: {} (the header is bytes 8..{} of the file)", path,
                            e.what(), h.data_start));
  }
  if (!root.is(Json::Kind::Object))
    throw Error(fmt::format("{}: the header is {}, not a JSON object", path, json_describe(root)));
  for (const auto& [name, value] : root.members) {
    if (name == "__metadata__") {
      if (!value.is(Json::Kind::Object))
        throw Error(fmt::format("{}: __metadata__ is {}, not an object of strings", path,
                                json_describe(value)));
      for (const auto& [key, v] : value.members) {
        if (!v.is(Json::Kind::String))
          throw Error(fmt::format("{}: __metadata__ entry {} is {}, not a string", path,
                                  name_text(key), json_describe(v)));
        h.metadata.emplace(key, v.text);
      }
      continue;
    }
    TensorInfo t = parse_tensor(name, value, path);
    if (t.end > h.data_bytes)
      throw Error(fmt::format(
          "{}: tensor {}: data_offsets [{}, {}] point past the end of the file (its data section "
          "has {} bytes): the file is truncated or its header is damaged",
          path, name_text(name), t.begin, t.end, h.data_bytes));
    h.tensors.push_back(std::move(t));
  }
  // The tensors must tile the data section: sorted by offset, each begins where the previous
  // one ends, the first at 0 and the last at the end of the file.
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t at = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& t : h.tensors) {
    if (t.begin < at)
      throw Error(fmt::format("{}: tensors {} (bytes {}..{}) and {} (bytes {}..{}) overlap", path,
                              name_text(prev->name), prev->begin, prev->end, name_text(t.name),
                              t.begin, t.end));
    if (t.begin > at)
      throw Error(fmt::format(
          "{}: bytes {}..{} of the data section belong to no tensor ({}): the data_offsets must "
          "be contiguous",
          path, at, t.begin,
          prev ? fmt::format("between {} and {}", name_text(prev->name), name_text(t.name))
               : fmt::format("before {}", name_text(t.name))));
    at = t.end;
    prev = &t;
  }
  if (at != h.data_bytes)
    throw Error(fmt::format(
        "{}: the data section has {} bytes, the tensors end at byte {}: {} trailing bytes belong "
        "to no tensor (a damaged file, or the header of another one)",
        path, h.data_bytes, at, h.data_bytes - at));
  h.index();
  return h;
}

Reader::Reader(std::string path) : path_(std::move(path)) {
  // O_NONBLOCK: a FIFO under the file's name cannot block the open; cleared once the file is
  // known to be a regular file.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) {
    if (errno == ENOENT) throw Error(fmt::format("{}: no such file", path_));
    throw Error(fmt::format("cannot open {}: {}", path_, errno_text()));
  }
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw Error(fmt::format("cannot stat {}: {}", path_, errno_text()));
    if (!S_ISREG(st.st_mode))
      throw Error(fmt::format("{}: not a regular file (a safetensors file was expected)", path_));
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
    const auto size = static_cast<uint64_t>(st.st_size);
    char first8[8];
    const ssize_t got = ::pread(fd_, first8, 8, 0);
    if (got < 0) throw Error(fmt::format("cannot read {}: {}", path_, errno_text()));
    const uint64_t n =
        parse_header_length(std::string_view(first8, static_cast<size_t>(got)), size, path_);
    std::string json(n, '\0');  // n <= kMaxHeaderBytes and <= the file size
    uint64_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, json.data() + done, n - done, static_cast<off_t>(8 + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(fmt::format("cannot read {}: {}", path_, errno_text()));
      if (r == 0)
        throw Error(
            fmt::format("{}: the file ended inside its header (it is being written?)", path_));
      done += static_cast<uint64_t>(r);
    }
    header_ = parse_header(json, size, path_);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

Reader::Reader(Reader&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), header_(std::move(other.header_)) {
  other.fd_ = -1;
}

Reader& Reader::operator=(Reader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    header_ = std::move(other.header_);
    other.fd_ = -1;
  }
  return *this;
}

Reader::~Reader() {
  if (fd_ >= 0) ::close(fd_);
}

void Reader::read(const TensorInfo& t, uint64_t offset, void* dst, uint64_t n) const {
  if (offset > t.bytes() || n > t.bytes() - offset)
    throw Error(fmt::format("{}: tensor {}: bytes {}..{} asked for, it has {}", path_,
                            name_text(t.name), offset, offset + n, t.bytes()));
  char* out = static_cast<char*>(dst);
  uint64_t pos = header_.data_start + t.begin + offset;
  while (n > 0) {
    const ssize_t r = ::pread(fd_, out, n, static_cast<off_t>(pos));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      throw Error(
          fmt::format("{}: tensor {}: cannot read: {}", path_, name_text(t.name), errno_text()));
    if (r == 0)
      throw Error(fmt::format(
          "{}: tensor {}: the file ends at byte {}, inside the tensor: it was truncated after it "
          "was opened",
          path_, name_text(t.name), pos));
    out += r;
    pos += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

std::string build_header(const std::vector<TensorSpec>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      json += (first ? "" : ",") + json_quote(k) + ":" + json_quote(v);
      first = false;
    }
    json += "}";
  }
  std::map<std::string, int> seen;
  uint64_t at = 0;
  for (const TensorSpec& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      throw Error(
          fmt::format("tensor name {} is not allowed in a safetensors file", name_text(t.name)));
    if (!seen.emplace(t.name, 0).second)
      throw Error(fmt::format("tensor {} appears twice", name_text(t.name)));
    for (int64_t d : t.shape)
      if (d < 0)
        throw Error(fmt::format("tensor {}: negative dimension in {}", name_text(t.name),
                                shape_str(t.shape)));
    const uint64_t bytes = t.bytes();
    uint64_t end;
    if (__builtin_add_overflow(at, bytes, &end))
      throw Error(fmt::format("tensor {}: the file would exceed 2^64 bytes", name_text(t.name)));
    json += fmt::format("{}{}:{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{},{}]}}",
                        json.size() > 1 ? "," : "", json_quote(t.name), dtype_name(t.dtype),
                        fmt::format("[{}]", fmt::join(t.shape, ",")), at, end);
    at = end;
  }
  json += "}";
  // Spaces up to a multiple of 8 after the length: the data section starts 8-byte aligned, so a
  // reader may map it and view every dtype in place.
  json.append((8 - json.size() % 8) % 8, ' ');
  if (json.size() > kMaxHeaderBytes)
    throw Error(
        fmt::format("the header would have {} bytes, beyond the format's limit of {}: "
                    "split the tensors over more files (--shard-size)",
                    json.size(), kMaxHeaderBytes));
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return out + json;
}

Writer::Writer(std::string path, const std::vector<TensorSpec>& tensors,
               const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), tmp_(path_ + ".tmp") {
  std::string header;
  try {
    header = build_header(tensors, metadata);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path_, e.what()));
  }
  for (const TensorSpec& t : tensors) data_bytes_ += t.bytes();  // build_header checked the sum
  header_bytes_ = header.size();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(fmt::format("cannot create {}: {}", tmp_, errno_text()));
  const char* p = header.data();
  uint64_t left = header.size();
  while (left > 0) {
    const ssize_t w = ::write(fd_, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw Error(fmt::format("cannot write {}: {}", tmp_, errno_text()));
    p += w;
    left -= static_cast<uint64_t>(w);
  }
}

Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(tmp_.c_str());
}

void Writer::append(const void* data, uint64_t n) {
  if (n > data_bytes_ - written_)
    throw Error(fmt::format("{}: {} more bytes than the header announces", path_,
                            n - (data_bytes_ - written_)));
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw Error(fmt::format("cannot write {}: {}", tmp_, errno_text()));
    p += w;
    n -= static_cast<uint64_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
}

void Writer::finish() {
  if (written_ != data_bytes_)
    throw Error(
        fmt::format("{}: {} of the {} data bytes were written", path_, written_, data_bytes_));
  if (::fsync(fd_) != 0) throw Error(fmt::format("cannot sync {}: {}", tmp_, errno_text()));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(fmt::format("cannot write {}: {}", tmp_, errno_text()));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw Error(fmt::format("cannot rename {} to {}: {}", tmp_, path_, errno_text()));
  finished_ = true;
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  fsync_directory(dir.empty() ? "." : dir);
}

std::string index_json(const Index& index) {
  std::string s = fmt::format("{{\n  \"metadata\": {{\n    \"total_size\": {}", index.total_size);
  for (const auto& [k, v] : index.metadata)
    s += fmt::format(",\n    {}: {}", json_quote(k), json_quote(v));
  s += "\n  },\n  \"weight_map\": {";
  bool first = true;
  for (const auto& [name, file] : index.weight_map) {
    s += fmt::format("{}\n    {}: {}", first ? "" : ",", json_quote(name), json_quote(file));
    first = false;
  }
  return s + "\n  }\n}\n";
}

Index parse_index(std::string_view json, const std::string& path) {
  Json root;
  try {
    root = parse_json(json);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path, e.what()));
  }
  if (!root.is(Json::Kind::Object))
    throw Error(
        fmt::format("{}: {}, not a JSON object with weight_map", path, json_describe(root)));
  Index index;
  if (const Json* meta = root.find("metadata")) {
    if (!meta->is(Json::Kind::Object))
      throw Error(fmt::format("{}: metadata is {}, not an object", path, json_describe(*meta)));
    for (const auto& [k, v] : meta->members) {
      if (k == "total_size") {
        int64_t n;
        if (!json_to_index(v, &n))
          throw Error(fmt::format("{}: metadata.total_size is {}, not a byte count", path,
                                  json_describe(v)));
        index.total_size = static_cast<uint64_t>(n);
      } else if (v.is(Json::Kind::String)) {
        index.metadata.emplace(k, v.text);
      }
    }
  }
  const Json* map = root.find("weight_map");
  if (!map || !map->is(Json::Kind::Object))
    throw Error(fmt::format(
        "{}: {}: an index maps each tensor to its file in \"weight_map\"", path,
        map ? "weight_map is " + json_describe(*map) + ", not an object" : "no weight_map"));
  for (const auto& [name, file] : map->members) {
    if (!file.is(Json::Kind::String))
      throw Error(fmt::format("{}: weight_map entry {} is {}, not a file name", path,
                              name_text(name), json_describe(file)));
    check_plain_file_name(file.text, fmt::format("{}: weight_map entry {}", path, name_text(name)));
    index.weight_map.emplace(name, file.text);
  }
  return index;
}

std::string shard_file_name(int shard, int num_shards) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", shard, num_shards);
}

}  // namespace mowe::safetensors
