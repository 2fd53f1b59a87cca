#include "runtime/checkpoint/posix_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "runtime/check.h"

namespace mowe::checkpoint {
namespace {

// strerror, with what to do for the failures a user can fix.
std::string reason(int err) {
  std::string text = std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) text += " (free space there or choose another directory)";
  if (err == EROFS) text += " (choose a writable directory)";
  return text;
}

}  // namespace

PosixFile::PosixFile(std::string path, int flags, int mode) : path_(std::move(path)) {
  // O_NONBLOCK so that a FIFO planted under a checkpoint's file name cannot block the open (for
  // writing it fails with ENXIO); a file read must be a regular file. Then the flag is cleared.
  do fd_ = ::open(path_.c_str(), flags | O_CLOEXEC | O_NONBLOCK, mode);
  while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) throw Error(fmt::format("cannot open {}: {}", path_, reason(errno)));
  struct stat st {};
  const bool reading = (flags & O_ACCMODE) == O_RDONLY;
  if (::fstat(fd_, &st) != 0 || (reading && !S_ISREG(st.st_mode))) {
    ::close(fd_);
    fd_ = -1;
    throw Error(fmt::format("cannot open {}: not a regular file", path_));
  }
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
}

PosixFile::PosixFile(PosixFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

PosixFile& PosixFile::operator=(PosixFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

PosixFile::~PosixFile() {
  if (fd_ >= 0) ::close(fd_);
}

int64_t PosixFile::size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0)
    throw Error(fmt::format("cannot stat {}: {}", path_, std::strerror(errno)));
  return static_cast<int64_t>(st.st_size);
}

void PosixFile::pread_exact(void* dst, size_t n, int64_t offset) const {
  char* p = static_cast<char*>(dst);
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      throw Error(fmt::format("cannot read {} ({} bytes at offset {}): {}", path_, n, offset,
                              std::strerror(errno)));
    if (got == 0)
      throw Error(fmt::format("cannot read {} ({} bytes at offset {}): the file ends at byte {}",
                              path_, n, offset, offset + static_cast<int64_t>(done)));
    done += static_cast<size_t>(got);
  }
}

void PosixFile::pwrite_all(const void* src, size_t n, int64_t offset) const {
  const char* p = static_cast<const char*>(src);
  size_t done = 0;
  while (done < n) {
    ssize_t put = ::pwrite(fd_, p + done, n - done, static_cast<off_t>(offset + done));
    if (put < 0 && errno == EINTR) continue;
    // A write of 0 bytes makes no progress: the device is full.
    int err = put < 0 ? errno : ENOSPC;
    if (put <= 0)
      throw Error(fmt::format("cannot write {} ({} bytes at offset {}): {}", path_, n, offset,
                              reason(err)));
    done += static_cast<size_t>(put);
  }
}

void PosixFile::truncate(int64_t size) const {
  int rc;
  do rc = ::ftruncate(fd_, static_cast<off_t>(size));
  while (rc != 0 && errno == EINTR);
  if (rc != 0)
    throw Error(fmt::format("cannot size {} to {} bytes: {}", path_, size, reason(errno)));
}

void PosixFile::sync() const {
  if (::fsync(fd_) != 0)
    throw Error(fmt::format("cannot flush {} to disk: {}", path_, reason(errno)));
}

void PosixFile::close() {
  if (fd_ < 0) return;
  int rc = ::close(std::exchange(fd_, -1));
  // After EINTR the descriptor is already released on Linux: never close it twice.
  if (rc != 0 && errno != EINTR)
    throw Error(fmt::format("cannot close {}: {}", path_, reason(errno)));
}

}  // namespace mowe::checkpoint
