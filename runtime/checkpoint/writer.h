// ChunkWriter: the part of a checkpoint one process writes. Each process writes the chunks it
// owns straight into the data files begin_checkpoint created (pwrite at the layout's offsets, so
// processes never coordinate), remembers each chunk's CRC32C, and syncs its files; the caller
// gathers the CRCs (crcs() and written() of every process) for the manifest.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/posix_io.h"

namespace mowe::checkpoint {

class ChunkWriter {
 public:
  // tmp_dir: what begin_checkpoint returned (on a file system every process sees).
  ChunkWriter(std::string tmp_dir, const Layout& layout);

  // Writes chunks [first_chunk, first_chunk + n) of tensor `name`: `data` holds their rows
  // contiguously (chunk c has Entry::chunk_num_rows(c) rows). Computes each chunk's CRC while
  // writing, in pieces, with no copy of the data. Error naming the file on an I/O failure.
  void write_chunks(const std::string& name, int64_t first_chunk, int64_t n, const void* data);
  void write_tensor(const std::string& name, const void* data);  // all its chunks

  // fsyncs and closes every file this writer touched; Error naming the file (e.g. ENOSPC).
  void sync();

  // One entry per global chunk (Layout::chunk_index): the CRC where this writer wrote the chunk,
  // else 0; and a parallel 0/1 mask of the chunks it wrote.
  const std::vector<uint32_t>& crcs() const { return crcs_; }
  const std::vector<uint8_t>& written() const { return written_; }

 private:
  const PosixFile& file(const std::string& name);

  std::string dir_;
  Layout layout_;
  std::map<std::string, PosixFile> files_;
  std::vector<uint32_t> crcs_;
  std::vector<uint8_t> written_;
  bool reached_fault_point_ = false;  // fault_point("tensor") once per checkpoint, mid-file
};

}  // namespace mowe::checkpoint
