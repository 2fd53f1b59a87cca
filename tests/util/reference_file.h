// Reads the tensors written by tests/reference/*.py (format documented there): versioned,
// little endian, f64 and i32 tensors by name.
#pragma once

#include <map>
#include <string>

#include "runtime/memory.h"

namespace mowe::testing {

struct ReferenceFile {
  uint32_t version = 0;
  std::map<std::string, Buffer> tensors;
  const Tensor& at(const std::string& name) const;  // throws naming the missing tensor
};

ReferenceFile read_reference_file(const std::string& path);

}  // namespace mowe::testing
