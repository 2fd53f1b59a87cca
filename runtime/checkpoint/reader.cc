#include "runtime/checkpoint/reader.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/checkpoint/framed_file.h"

namespace mowe::checkpoint {
namespace {

// verify_all reads a chunk in pieces of this size: memory stays bounded for any chunk.
constexpr int64_t kPieceBytes = int64_t{4} << 20;

}  // namespace

CheckpointReader::CheckpointReader(std::string checkpoint_dir) : path_(std::move(checkpoint_dir)) {
  const std::string manifest_path = path_ + "/" + kManifestFile;
  // read_framed_file names manifest_path; the rest names the checkpoint.
  std::string payload = read_framed_file(manifest_path, kManifestMagic, kFormatVersion);
  if (!manifest_.ParseFromString(payload))
    throw Error(
        fmt::format("{}: damaged: the payload is not a checkpoint manifest", manifest_path));
  if (manifest_.format_version() > kFormatVersion)
    throw Error(fmt::format("{}: format version {}, this build reads up to {}: use a newer mowe",
                            manifest_path, manifest_.format_version(), kFormatVersion));
  try {
    layout_ = Layout::from_manifest(manifest_);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", manifest_path, e.what()));
  }
  std::map<std::string, size_t> file_index;
  for (const auto& [name, size] : layout_.file_sizes()) {
    const std::string file_path = path_ + "/" + name;
    std::error_code ec;
    if (!std::filesystem::exists(file_path, ec))
      throw Error(fmt::format("checkpoint {}: data file {} is missing", path_, file_path));
    PosixFile f(file_path, O_RDONLY);
    const int64_t actual = f.size();
    if (actual != size)
      throw Error(
          fmt::format("checkpoint {}: data file {} has {} bytes, the manifest says {}: "
                      "the checkpoint is {}; use another checkpoint",
                      path_, file_path, actual, size, actual < size ? "truncated" : "damaged"));
    file_index[name] = files_.size();
    files_.push_back(std::move(f));
  }
  for (const Layout::Entry& e : layout_.entries())
    entry_file_.push_back(file_index.at(e.spec.file));
}

const Layout::Entry& CheckpointReader::entry(const std::string& name) const {
  const Layout::Entry* e = layout_.find(name);
  if (!e) throw Error(fmt::format("checkpoint {} has no tensor '{}'", path_, name));
  return *e;
}

void CheckpointReader::expect(const std::string& name, DType dtype, const Shape& shape) const {
  const Layout::Entry& e = entry(name);
  if (e.spec.dtype != dtype || !(e.spec.shape == shape))
    throw Error(fmt::format("checkpoint {}: tensor '{}' is {}{}, this model expects {}{}", path_,
                            name, dtype_name(e.spec.dtype), e.spec.shape.str(), dtype_name(dtype),
                            shape.str()));
}

void CheckpointReader::damaged(size_t i, int64_t c, uint32_t crc) const {
  const Layout::Entry& e = layout_.entries()[i];
  const int64_t first = e.chunk_first_row(c);
  throw Error(fmt::format(
      "checkpoint {}: tensor '{}' chunk {} (rows {}..{} of {}) is damaged: CRC32C {:#010x}, the "
      "manifest says {:#010x}",
      path_, e.spec.name, c, first, first + e.chunk_num_rows(c) - 1, e.spec.file, crc,
      expected_crc(i, c)));
}

void CheckpointReader::read_chunk(size_t i, int64_t c, char* dst) const {
  const Layout::Entry& e = layout_.entries()[i];
  const int64_t bytes = e.chunk_bytes(c);
  files_[entry_file_[i]].pread_exact(dst, bytes, e.chunk_offset(c));
  const uint32_t crc = crc32c(dst, bytes);
  if (crc != expected_crc(i, c)) damaged(i, c, crc);
}

void CheckpointReader::read_rows(const std::string& name, int64_t first_row, int64_t n,
                                 void* dst) const {
  const Layout::Entry& e = entry(name);
  MOWE_CHECK(0 <= first_row && 0 <= n && first_row + n <= e.rows,
             "tensor '{}' has {} rows, asked to read [{}, {})", name, e.rows, first_row,
             first_row + n);
  if (n == 0) return;
  const size_t i = static_cast<size_t>(&e - layout_.entries().data());
  const int64_t chunk_rows = e.spec.chunk_rows;
  char* out = static_cast<char*>(dst);
  std::vector<char> buffer;  // for chunks only partly wanted
  for (int64_t c = first_row / chunk_rows; c <= (first_row + n - 1) / chunk_rows; ++c) {
    const int64_t lo = std::max(first_row, e.chunk_first_row(c));
    const int64_t hi = std::min(first_row + n, e.chunk_first_row(c) + e.chunk_num_rows(c));
    char* target = out + (lo - first_row) * e.row_bytes;
    if (lo == e.chunk_first_row(c) && hi - lo == e.chunk_num_rows(c)) {
      read_chunk(i, c, target);  // whole chunk wanted: read in place
      continue;
    }
    buffer.resize(e.chunk_bytes(c));
    read_chunk(i, c, buffer.data());
    std::memcpy(target, buffer.data() + (lo - e.chunk_first_row(c)) * e.row_bytes,
                (hi - lo) * e.row_bytes);
  }
}

void CheckpointReader::read_tensor(const std::string& name, void* dst) const {
  read_rows(name, 0, entry(name).rows, dst);
}

int64_t CheckpointReader::verify_all() const {
  std::vector<char> buffer;
  int64_t checked = 0;
  for (size_t i = 0; i < layout_.entries().size(); ++i) {
    const Layout::Entry& e = layout_.entries()[i];
    const PosixFile& f = files_[entry_file_[i]];
    for (int64_t c = 0; c < e.num_chunks; ++c) {
      const int64_t bytes = e.chunk_bytes(c);
      uint32_t crc = 0;
      for (int64_t done = 0; done < bytes; done += kPieceBytes) {
        const int64_t piece = std::min(kPieceBytes, bytes - done);
        buffer.resize(std::max<size_t>(buffer.size(), piece));
        f.pread_exact(buffer.data(), piece, e.chunk_offset(c) + done);
        crc = crc32c(buffer.data(), piece, crc);
      }
      if (crc != expected_crc(i, c)) damaged(i, c, crc);
      checked += bytes;
    }
  }
  return checked;
}

}  // namespace mowe::checkpoint
