// Internal to the checkpoint library: POSIX file I/O that loops over EINTR and short transfers and
// turns every failure into a one-line mowe::Error naming the file and the system's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mowe::checkpoint {

// An open file descriptor, closed by the destructor (errors there are ignored: call close()
// where they matter, e.g. after writing).
class PosixFile {
 public:
  PosixFile() = default;
  // Opens path with open(2) flags; throws "cannot open <path>: <reason>".
  PosixFile(std::string path, int flags, int mode = 0644);
  PosixFile(PosixFile&& other) noexcept;
  PosixFile& operator=(PosixFile&& other) noexcept;
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;
  ~PosixFile();

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  int64_t size() const;  // fstat
  // Reads exactly n bytes at offset; a file that ends earlier is an error, never a short read.
  void pread_exact(void* dst, size_t n, int64_t offset) const;
  void pwrite_all(const void* src, size_t n, int64_t offset) const;
  void truncate(int64_t size) const;
  void sync() const;
  void close();  // reports close(2) errors (NFS reports failed writes there)

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace mowe::checkpoint
