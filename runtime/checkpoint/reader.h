// CheckpointReader: opens a complete checkpoint directory, validates its manifest and data files,
// and reads any rows of any tensor (so a different world size takes a different share of an
// expert tensor), verifying the CRC32C of every chunk it reads before handing out its bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/posix_io.h"
#include "runtime/checkpoint/proto/checkpoint.pb.h"

namespace mowe::checkpoint {

// The version of the manifest format this build writes and the newest it reads.
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr char kManifestMagic[] = "MOWECKPT";
inline constexpr char kManifestFile[] = "manifest.pb";

class CheckpointReader {
 public:
  // Reads and validates manifest.pb and the layout, and checks that every data file exists with
  // the recorded size. Errors name the checkpoint and the file.
  explicit CheckpointReader(std::string checkpoint_dir);

  const CheckpointManifest& manifest() const { return manifest_; }
  const Layout& layout() const { return layout_; }
  const std::string& path() const { return path_; }

  // Throws, naming the tensor and both dtype/shapes, unless `name` exists with that dtype and
  // shape.
  void expect(const std::string& name, DType dtype, const Shape& shape) const;

  // Global rows [first_row, first_row + n) of `name` into dst (n * row_bytes bytes). Reads every
  // chunk it touches whole and checks its CRC before copying; Error naming the tensor, chunk,
  // rows and file on a mismatch (dst's contents are then unspecified). Safe to call from several
  // threads.
  void read_rows(const std::string& name, int64_t first_row, int64_t n, void* dst) const;
  void read_tensor(const std::string& name, void* dst) const;

  // Checks every chunk of every tensor, reading with a bounded buffer; returns the bytes checked.
  int64_t verify_all() const;

 private:
  const Layout::Entry& entry(const std::string& name) const;
  // Reads chunk c of entry i into dst (chunk_bytes(c) bytes) and checks its CRC.
  void read_chunk(size_t i, int64_t c, char* dst) const;
  uint32_t expected_crc(size_t i, int64_t c) const {
    return manifest_.tensors(static_cast<int>(i)).chunk_crc32c(static_cast<int>(c));
  }
  [[noreturn]] void damaged(size_t i, int64_t c, uint32_t crc) const;

  std::string path_;
  CheckpointManifest manifest_;
  Layout layout_;
  std::vector<PosixFile> files_;    // parallel to layout_.file_sizes()
  std::vector<size_t> entry_file_;  // index into files_ for each layout entry
};

}  // namespace mowe::checkpoint
