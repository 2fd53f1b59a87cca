// libFuzzer target: the input is a whole safetensors file in memory, parsed as the reader does
// (header length against the file size, then the JSON header), and also as an index file. A
// refusal is a mowe::Error; anything else (a crash, a sanitizer report, another exception) is a
// bug. An accepted header must keep the parser's promises: every tensor inside the file, its size
// that of its shape and dtype, the tensors tiling the data section.
#include <cstdint>
#include <string_view>

#include "runtime/check.h"
#include "runtime/safetensors/safetensors.h"

namespace st = mowe::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  try {
    const uint64_t n = st::parse_header_length(file.substr(0, 8), size, "fuzz.safetensors");
    const st::Header h = st::parse_header(file.substr(8, n), size, "fuzz.safetensors");
    uint64_t at = 0;
    for (const st::TensorInfo& t : h.tensors) {
      uint64_t bytes = static_cast<uint64_t>(st::dtype_size(t.dtype));
      for (int64_t d : t.shape) bytes *= static_cast<uint64_t>(d);
      if (t.begin != at || t.bytes() != bytes || h.data_start + t.end > size ||
          h.find(t.name) != &t)
        __builtin_trap();
      at = t.end;
    }
    if (at != h.data_bytes) __builtin_trap();
  } catch (const mowe::Error&) {
  }
  try {
    st::parse_index(file, "fuzz.index.json");
  } catch (const mowe::Error&) {
  }
  return 0;
}
