#include "tests/util/reference_file.h"

#include <cstring>
#include <fstream>
#include <vector>

namespace mowe::testing {

const Tensor& ReferenceFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  MOWE_CHECK(it != tensors.end(), "reference file has no tensor '{}'", name);
  return it->second.tensor();
}

ReferenceFile read_reference_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOWE_CHECK(in.good(), "cannot open reference file {}", path);
  auto read = [&](void* dst, size_t n) {
    in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    MOWE_CHECK(in.good(), "reference file {} is truncated", path);
  };
  auto u32 = [&] {
    uint32_t v;
    read(&v, 4);
    return v;
  };
  char magic[8];
  read(magic, 8);
  MOWE_CHECK(std::memcmp(magic, "MOWEREF", 8) == 0, "{} is not a reference file", path);
  ReferenceFile file;
  file.version = u32();
  const uint32_t count = u32();
  for (uint32_t i = 0; i < count; ++i) {
    std::string name(u32(), '\0');
    read(name.data(), name.size());
    const uint32_t dtype = u32(), ndim = u32();
    MOWE_CHECK(dtype <= 1 && ndim <= 4, "{}: tensor '{}' has dtype {} and {} dims", path, name,
               dtype, ndim);
    std::vector<int64_t> dims(ndim);
    read(dims.data(), ndim * 8);
    Shape shape;
    if (ndim == 1) shape = {dims[0]};
    if (ndim == 2) shape = {dims[0], dims[1]};
    if (ndim == 3) shape = {dims[0], dims[1], dims[2]};
    if (ndim == 4) shape = {dims[0], dims[1], dims[2], dims[3]};
    Buffer buf(host_allocator(), shape, dtype == 0 ? DType::F64 : DType::I32);
    read(buf.tensor().data, buf.tensor().nbytes());
    file.tensors.emplace(name, std::move(buf));
  }
  return file;
}

}  // namespace mowe::testing
