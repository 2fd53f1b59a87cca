// Moving tensor bytes between a checkpoint and safetensors files, for export and import: the
// dtype and shape mapping, the transpose of a matrix, and batches of whole chunks of bounded
// size, so that memory never holds more than one batch (or one transposed matrix).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/tensor.h"

namespace mowe::convert {

// Tensors are moved in batches of whole chunks of at most this many bytes (a chunk larger than
// this, and a tensor that is transposed, is moved whole).
inline constexpr int64_t kBatchBytes = int64_t{64} << 20;

// The same dtype in safetensors' terms; bytes are copied, never converted.
safetensors::DType to_safetensors(DType d);

std::vector<int64_t> dims(const Shape& s);

// [rows, cols] -> [cols, rows] of elements of `elem` bytes.
void transpose(const char* src, int64_t rows, int64_t cols, int64_t elem, char* dst);

// Calls f(first chunk, chunks, first row, rows, bytes) for batches of whole chunks of tensor `e`
// of at most kBatchBytes (at least one chunk), in order.
template <typename F>
void for_each_batch(const checkpoint::Layout::Entry& e, F&& f) {
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

}  // namespace mowe::convert
