#include "runtime/checkpoint/directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>

#include "runtime/check.h"
#include "runtime/checkpoint/fault_point.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/posix_io.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/files.h"

namespace mowe::checkpoint {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kTmpPrefix = ".tmp-";  // a checkpoint being written
constexpr std::string_view kOldPrefix = ".old-";  // a replaced checkpoint being removed
constexpr std::string_view kDelPrefix = ".del-";  // a checkpoint being deleted
constexpr std::string_view kLatestFile = "latest";
constexpr std::string_view kDamagedSuffix = ".damaged";  // set aside: failed to load

// "step-00000010" -> 10; false for anything else.
bool parse_checkpoint_name(std::string_view name, int64_t* step) {
  constexpr std::string_view prefix = "step-";
  if (name.size() < prefix.size() + 8 || name.substr(0, prefix.size()) != prefix) return false;
  std::string_view digits = name.substr(prefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *step);
  return ec == std::errc() && end == digits.data() + digits.size();
}

void remove_tree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) throw Error(fmt::format("cannot remove {}: {}", path.string(), ec.message()));
}

void rename_or_throw(const fs::path& from, const fs::path& to);

// Renamed out of the checkpoint namespace first, so a crash half-way through the deletion never
// leaves a step-N whose manifest names missing files.
void delete_checkpoint(const fs::path& dir, const std::string& name) {
  const fs::path doomed = dir / (std::string(kDelPrefix) + name);
  remove_tree(doomed);
  rename_or_throw(dir / name, doomed);
  remove_tree(doomed);
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw Error(fmt::format("cannot rename {} to {}: {}", from.string(), to.string(),
                            std::strerror(errno)));
}

// Puts the complete checkpoint `tmp` in place of the existing `final`: swapped atomically where
// the file system can (renameat2), else by moving the old one aside first.
void replace_directory(const fs::path& dir, const fs::path& tmp, const fs::path& final) {
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final.c_str(), RENAME_EXCHANGE) == 0) {
    fsync_directory(dir.string());
    remove_tree(tmp);  // now holds the old checkpoint
    return;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    throw Error(fmt::format("cannot replace {} with {}: {}", final.string(), tmp.string(),
                            std::strerror(errno)));
  const fs::path old = dir / (std::string(kOldPrefix) + final.filename().string());
  remove_tree(old);
  rename_or_throw(final, old);
  rename_or_throw(tmp, final);
  fsync_directory(dir.string());
  remove_tree(old);
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  MOWE_CHECK(step >= 0, "checkpoint step {} is negative", step);
  return fmt::format("step-{:08d}", step);
}

void check_checkpoint_directory(const std::string& dir, const std::string& what) {
  if (dir.empty()) throw Error(fmt::format("{} is empty: set it to a directory", what));
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (fs::exists(status)) {
    if (!fs::is_directory(status))
      throw Error(fmt::format("{} '{}' is not a directory", what, dir));
  } else if (fs::create_directories(dir, ec); ec) {
    throw Error(fmt::format("{} '{}' cannot be created: {}", what, dir, ec.message()));
  }
  // Permission bits say nothing when running as root, and nothing about read-only mounts: try.
  const std::string probe = fmt::format("{}/.write-probe.{}", dir, ::getpid());
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error(fmt::format("{} '{}' is not writable: {}", what, dir, std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string begin_checkpoint(const std::string& dir, int64_t step, const Layout& layout) {
  const fs::path tmp = fs::path(dir) / (std::string(kTmpPrefix) + checkpoint_name(step));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", dir, ec.message()));
  remove_tree(tmp);  // left by an interrupted attempt at the same step
  if (!fs::create_directory(tmp, ec) || ec)
    throw Error(fmt::format("cannot create {}: {}", tmp.string(), ec.message()));
  for (const auto& [name, size] : layout.file_sizes()) {
    PosixFile f((tmp / name).string(), O_WRONLY | O_CREAT | O_TRUNC);
    f.truncate(size);
    f.close();
  }
  return tmp.string();
}

void commit_checkpoint(const std::string& dir, const std::string& tmp_dir, int64_t step,
                       const CheckpointManifest& manifest) {
  MOWE_CHECK(!manifest.has_step() || manifest.step() == step,
             "commit_checkpoint of step {} with a manifest of step {}", step, manifest.step());
  CheckpointManifest m = manifest;
  m.set_format_version(kFormatVersion);
  m.set_step(step);
  if (!m.has_created_unix_s()) m.set_created_unix_s(static_cast<int64_t>(std::time(nullptr)));
  write_framed_file(tmp_dir + "/" + kManifestFile, kManifestMagic, kFormatVersion,
                    m.SerializeAsString());
  // The data files' entries (and caller files) become durable with their directory.
  fsync_directory(tmp_dir);
  const std::string name = checkpoint_name(step);
  const fs::path final = fs::path(dir) / name;
  fault_point("rename");
  std::error_code ec;
  if (fs::exists(final, ec)) {
    replace_directory(dir, tmp_dir, final);
  } else {
    rename_or_throw(tmp_dir, final);
    fsync_directory(dir);
  }
  fault_point("latest");
  write_file_atomically((fs::path(dir) / kLatestFile).string(), name + "\n");
}

std::vector<CheckpointInfo> list_checkpoints(const std::string& dir,
                                             std::vector<std::string>* incomplete) {
  // Per step the best complete directory: step-N; else, after a crash in the middle of replacing
  // step-N without RENAME_EXCHANGE, the new .tmp-step-N (its manifest is written last) or the
  // old .old-step-N.
  std::map<int64_t, std::pair<int, CheckpointInfo>> best;  // step -> (rank, info); lower wins
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  fs::directory_iterator it(dir, ec);
  if (ec) throw Error(fmt::format("cannot list checkpoint directory {}: {}", dir, ec.message()));
  for (const fs::directory_entry& entry : it) {
    const std::string file = entry.path().filename().string();
    int rank = 0;
    std::string_view name = file;
    if (name.starts_with(kTmpPrefix)) rank = 1, name.remove_prefix(kTmpPrefix.size());
    if (name.starts_with(kOldPrefix)) rank = 2, name.remove_prefix(kOldPrefix.size());
    CheckpointInfo info;
    if (!parse_checkpoint_name(name, &info.step) || !entry.is_directory(ec)) continue;
    if (!fs::exists(entry.path() / kManifestFile, ec)) {  // not a complete checkpoint
      if (rank == 0 && incomplete) incomplete->push_back(entry.path().string());
      continue;
    }
    info.name = file;
    info.path = entry.path().string();
    auto found = best.find(info.step);
    if (found == best.end() || rank < found->second.first) best[info.step] = {rank, info};
  }
  std::vector<CheckpointInfo> out;
  for (auto it2 = best.rbegin(); it2 != best.rend(); ++it2) out.push_back(it2->second.second);
  return out;
}

std::string set_aside_damaged(const std::string& dir, const CheckpointInfo& checkpoint) {
  const std::string base = checkpoint_name(checkpoint.step) + std::string(kDamagedSuffix);
  fs::path target = fs::path(dir) / base;
  std::error_code ec;
  for (int n = 2; fs::exists(target, ec); ++n)
    target = fs::path(dir) / fmt::format("{}-{}", base, n);
  rename_or_throw(checkpoint.path, target);
  fsync_directory(dir);
  return target.string();
}

std::optional<std::string> read_latest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kLatestFile).string();
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  std::string text = read_file(path, "latest checkpoint pointer");
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  int64_t step;
  if (!parse_checkpoint_name(text, &step))
    throw Error(
        fmt::format("{} holds '{}', not a checkpoint name: delete it to resume from the "
                    "newest complete checkpoint",
                    path, text.substr(0, 40)));
  return text;
}

std::vector<std::string> remove_old_checkpoints(const std::string& dir, int keep) {
  MOWE_CHECK(keep >= 0, "remove_old_checkpoints: keep {} is negative", keep);
  const std::optional<std::string> latest = read_latest(dir);
  std::vector<std::string> removed;
  const std::vector<CheckpointInfo> complete = list_checkpoints(dir);
  for (size_t i = static_cast<size_t>(keep); i < complete.size(); ++i) {
    if (latest && complete[i].name == *latest) continue;
    if (complete[i].name.starts_with('.')) continue;  // a recovered one: removed below
    delete_checkpoint(dir, complete[i].name);
    removed.push_back(complete[i].name);
  }
  // Leftovers of interrupted writes, replacements and deletions; only called when no checkpoint
  // is being written (the caller just committed one).
  std::error_code ec;
  if (!fs::exists(dir, ec)) return removed;
  std::vector<fs::path> stale;
  fs::directory_iterator it(dir, ec);
  if (ec) throw Error(fmt::format("cannot list checkpoint directory {}: {}", dir, ec.message()));
  for (const fs::directory_entry& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(kTmpPrefix) || name.starts_with(kOldPrefix) ||
        name.starts_with(kDelPrefix))
      stale.push_back(entry.path());
  }
  for (const fs::path& path : stale) {
    remove_tree(path);
    removed.push_back(path.filename().string());
  }
  return removed;
}

std::vector<std::string> remove_later_checkpoints(const std::string& dir, int64_t step) {
  std::vector<std::string> removed;
  for (const CheckpointInfo& c : list_checkpoints(dir)) {
    if (c.step <= step || c.name.starts_with('.')) continue;
    delete_checkpoint(dir, c.name);
    removed.push_back(c.name);
  }
  return removed;
}

}  // namespace mowe::checkpoint
