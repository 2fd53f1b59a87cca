#include "launch/convert/tensor_bytes.h"

#include <cstring>

#include "runtime/check.h"

namespace mowe::convert {

namespace st = mowe::safetensors;

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

void transpose(const char* src, int64_t rows, int64_t cols, int64_t elem, char* dst) {
  constexpr int64_t kTile = 32;  // cache-friendly tiles; the result is the same in any order
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c)
          std::memcpy(dst + (c * rows + r) * elem, src + (r * cols + c) * elem,
                      static_cast<size_t>(elem));
}

}  // namespace mowe::convert
