#include "runtime/checkpoint/writer.h"

#include <fcntl.h>

#include <algorithm>
#include <utility>

#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/checkpoint/fault_point.h"

namespace mowe::checkpoint {
namespace {

// Bytes checksummed then written at a time: the piece is still in cache when pwrite copies it.
constexpr int64_t kPieceBytes = int64_t{4} << 20;

}  // namespace

ChunkWriter::ChunkWriter(std::string tmp_dir, const Layout& layout)
    : dir_(std::move(tmp_dir)),
      layout_(layout),
      crcs_(layout.total_chunks(), 0),
      written_(layout.total_chunks(), 0) {}

const PosixFile& ChunkWriter::file(const std::string& name) {
  auto it = files_.find(name);
  if (it == files_.end()) {
    // No O_CREAT: begin_checkpoint made every file, so a missing one means this process does not
    // see the directory the others write (e.g. a node-local path).
    std::string path = dir_ + "/" + name;
    try {
      it = files_.emplace(name, PosixFile(path, O_WRONLY)).first;
    } catch (const Error& e) {
      throw Error(
          fmt::format("{} (is the checkpoint directory on a file system every process "
                      "sees, and was begin_checkpoint called?)",
                      e.what()));
    }
  }
  return it->second;
}

void ChunkWriter::write_chunks(const std::string& name, int64_t first_chunk, int64_t n,
                               const void* data) {
  const Layout::Entry& e = layout_.at(name);
  MOWE_CHECK(0 <= first_chunk && 0 <= n && first_chunk + n <= e.num_chunks,
             "tensor '{}' has {} chunks, asked to write [{}, {})", name, e.num_chunks, first_chunk,
             first_chunk + n);
  if (n == 0) return;
  MOWE_CHECK(data != nullptr, "write_chunks of tensor '{}' without data", name);
  const PosixFile& f = file(e.spec.file);
  const char* src = static_cast<const char*>(data);
  const int64_t base = layout_.chunk_index(name, first_chunk);
  for (int64_t c = first_chunk; c < first_chunk + n; ++c) {
    const int64_t bytes = e.chunk_bytes(c);
    const int64_t offset = e.chunk_offset(c);
    uint32_t crc = 0;
    for (int64_t done = 0; done < bytes; done += kPieceBytes) {
      const int64_t piece = std::min(kPieceBytes, bytes - done);
      crc = crc32c(src + done, piece, crc);
      f.pwrite_all(src + done, piece, offset + done);
    }
    crcs_[base + c - first_chunk] = crc;
    written_[base + c - first_chunk] = 1;
    src += bytes;
    if (!reached_fault_point_) reached_fault_point_ = true, fault_point("tensor");
  }
}

void ChunkWriter::write_tensor(const std::string& name, const void* data) {
  write_chunks(name, 0, layout_.at(name).num_chunks, data);
}

void ChunkWriter::sync() {
  for (auto& [name, f] : files_) {
    f.sync();
    f.close();
  }
  files_.clear();
}

}  // namespace mowe::checkpoint
