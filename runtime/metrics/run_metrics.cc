#include "runtime/metrics/run_metrics.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <set>
#include <string_view>

#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/files.h"
#include "runtime/metrics/proto/event.pb.h"

namespace mowe::metrics {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFix = "set training.run_dir to a directory this process can write";
constexpr const char* kEventPrefix = "events.out.tfevents.";

// Distinguishes event files one process opens within the same second (TensorBoard's writers
// append such a counter too).
std::atomic<int> g_event_file_counter{0};

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Printable ASCII without spaces: a tag stays one token in logs and scripts and needs no quoting
// in TensorBoard's tag filter; JSON escaping then only concerns '"' and '\'.
void check_tag(const std::string& tag) {
  bool ok = !tag.empty() && tag != "step" && tag != "time";
  for (char c : tag) ok = ok && c > ' ' && c <= '~';
  if (!ok) {
    throw Error(fmt::format(
        "metrics tag '{}' is not valid: use printable ASCII without spaces, like train/loss "
        "(and not 'step' or 'time', the keys every metrics.jsonl record has)",
        tag));
  }
}

void append_json_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_json_number(std::string& out, double v) {
  // fmt's shortest round-trip form ("2.5", "1e-05", "1e+300") is valid JSON; NaN and Inf are
  // not JSON at all.
  if (std::isfinite(v)) {
    fmt::format_to(std::back_inserter(out), "{}", v);
  } else {
    out += "null";
  }
}

// Converting a double beyond float's range is undefined behaviour: saturate to infinity, which
// is what the value means on TensorBoard's float axis.
float to_float(double v) {
  constexpr double kMax = std::numeric_limits<float>::max();
  if (v > kMax) return std::numeric_limits<float>::infinity();
  if (v < -kMax) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(v);
}

// The step of a line this library wrote ({"step":N,...}); false for anything else, such as the
// partial last line a killed run leaves.
bool parse_step(std::string_view line, int64_t* step) {
  constexpr std::string_view kPrefix = "{\"step\":";
  if (line.substr(0, kPrefix.size()) != kPrefix || line.back() != '}') return false;
  const char* begin = line.data() + kPrefix.size();
  const char* end = line.data() + line.size();
  auto [next, ec] = std::from_chars(begin, end, *step);
  return ec == std::errc() && next != begin && (*next == ',' || *next == '}');
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// TFRecord framing: uint64 length, masked CRC32C of those 8 bytes, the data, masked CRC32C of
// the data, all little-endian. The length has its own CRC so a reader never trusts a damaged
// length to skip ahead.
std::string tfrecord(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, checkpoint::crc32c_mask(checkpoint::crc32c(out.data(), 8)), 4);
  out += data;
  put_le(out, checkpoint::crc32c_mask(checkpoint::crc32c(data.data(), data.size())), 4);
  return out;
}

// Keeps the records of metrics.jsonl up to start_step, rewriting the file atomically when
// anything goes, so a crash during the rewrite leaves the old file rather than half of one.
// Returns whether the file held any records, i.e. whether this run continues an earlier one.
bool keep_records_up_to(const std::string& path, int64_t start_step) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) return false;
  // A device or pipe the user pointed metrics.jsonl at (such as /dev/null) has no history to
  // rewrite; reading /dev/zero-like files would never end.
  if (!fs::is_regular_file(status)) return false;
  std::string text;
  try {
    text = read_file(path, "metrics file");
  } catch (const Error& e) {
    throw Error(fmt::format("{}; {}", e.what(), kFix));
  }
  std::string kept;
  int64_t dropped = 0;
  int64_t unreadable = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t newline = text.find('\n', pos);
    bool complete = newline != std::string::npos;
    std::string_view line(text.data() + pos, (complete ? newline : text.size()) - pos);
    pos = complete ? newline + 1 : text.size();
    if (line.empty()) continue;
    int64_t step = 0;
    if (!complete || !parse_step(line, &step)) {
      ++unreadable;
    } else if (step > start_step) {
      ++dropped;
    } else {
      kept.append(line);
      kept += '\n';
    }
  }
  if (unreadable > 0) {
    spdlog::warn(
        "[metrics] {}: dropped {} unreadable line(s) (a run killed while writing leaves a "
        "partial last line)",
        path, unreadable);
  }
  if (dropped > 0) {
    spdlog::info("[metrics] {}: dropped {} record(s) after step {}, abandoned by this {}", path,
                 dropped, start_step, start_step > 0 ? "resume" : "fresh start");
  }
  if (dropped > 0 || unreadable > 0) {
    try {
      write_file_atomically(path, kept);
    } catch (const Error& e) {
      throw Error(fmt::format("{}; {}", e.what(), kFix));
    }
  }
  return !text.empty();
}

bool has_event_files(const fs::path& tb_dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tb_dir, ec)) {
    if (entry.path().filename().string().starts_with(kEventPrefix)) return true;
  }
  return false;
}

// events.out.tfevents.<unix seconds, 10 digits>.<host>.<pid>.<counter>, TensorBoard's naming:
// the zero-padded time makes name order the order the files were started in, which is the order
// TensorBoard reads them (and so applies a later file's SessionLog START to earlier ones).
// O_EXCL: a name that exists already is never appended to.
std::FILE* create_event_file(const fs::path& tb_dir, std::string* path) {
  const std::string host = hostname();
  for (int attempt = 0;; ++attempt) {
    *path = (tb_dir / fmt::format("{}{:010d}.{}.{}.{}", kEventPrefix,
                                  static_cast<int64_t>(unix_seconds()), host, ::getpid(),
                                  g_event_file_counter.fetch_add(1)))
                .string();
    int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST && attempt < 100) continue;
    if (fd < 0) {
      throw Error(fmt::format("cannot create TensorBoard event file {}: {}; {}", *path,
                              std::strerror(errno), kFix));
    }
    std::FILE* file = ::fdopen(fd, "wb");
    if (file == nullptr) {
      int err = errno;
      ::close(fd);
      throw Error(fmt::format("cannot open TensorBoard event file {}: {}; {}", *path,
                              std::strerror(err), kFix));
    }
    return file;
  }
}

}  // namespace

RunMetrics::RunMetrics(const std::string& dir, int64_t start_step) {
  MOWE_CHECK(start_step >= 0, "start_step {} is negative", start_step);
  const fs::path root(dir);
  const fs::path tb_dir = root / "tb";
  std::error_code ec;
  fs::create_directories(tb_dir, ec);
  if (ec) {
    throw Error(fmt::format("cannot create metrics directory {}: {}; {}", tb_dir.string(),
                            ec.message(), kFix));
  }

  jsonl_.path = (root / "metrics.jsonl").string();
  bool continues = keep_records_up_to(jsonl_.path, start_step);
  jsonl_.file = std::fopen(jsonl_.path.c_str(), "ae");
  if (jsonl_.file == nullptr) {
    throw Error(fmt::format("cannot open metrics file {}: {}; {}", jsonl_.path,
                            std::strerror(errno), kFix));
  }

  continues = has_event_files(tb_dir) || continues;
  try {
    events_.file = create_event_file(tb_dir, &events_.path);
  } catch (...) {
    std::fclose(jsonl_.file);
    throw;
  }
  const double now = unix_seconds();
  tb::Event version;
  version.set_wall_time(now);
  version.set_file_version("brain.Event:2");  // version 2: TensorBoard honours SessionLog START
  write_event(version.SerializeAsString());
  if (start_step > 0 || continues) {
    tb::Event start;
    start.set_wall_time(now);
    start.set_step(start_step + 1);
    start.mutable_session_log()->set_status(tb::SessionLog::START);
    write_event(start.SerializeAsString());
  }
  flush();
}

RunMetrics::~RunMetrics() {
  for (Sink* sink : {&jsonl_, &events_}) {
    if (sink->file == nullptr) continue;
    flush(*sink);
    // close(2) is where NFS reports a failed write.
    if (sink->file != nullptr && std::fclose(sink->file) != 0) {
      spdlog::warn("[metrics] cannot close {}: {}", sink->path, std::strerror(errno));
    }
    sink->file = nullptr;
  }
}

void RunMetrics::write(int64_t step, std::span<const Scalar> scalars) {
  if (scalars.empty()) return;
  std::set<std::string_view> seen;
  for (const Scalar& s : scalars) {
    check_tag(s.tag);
    if (!seen.insert(s.tag).second) {
      throw Error(
          fmt::format("metrics tag '{}' appears twice in the record of step {}", s.tag, step));
    }
  }
  const double now = unix_seconds();
  if (jsonl_.file != nullptr) {
    std::string line = fmt::format("{{\"step\":{},\"time\":{:.3f}", step, now);
    for (const Scalar& s : scalars) {
      line += ',';
      append_json_string(line, s.tag);
      line += ':';
      append_json_number(line, s.value);
    }
    line += "}\n";
    append(jsonl_, line);
  }
  if (events_.file != nullptr) {
    tb::Event event;
    event.set_wall_time(now);
    event.set_step(step);
    tb::Summary* summary = event.mutable_summary();
    for (const Scalar& s : scalars) {
      tb::Summary::Value* value = summary->add_value();
      value->set_tag(s.tag);
      value->set_simple_value(to_float(s.value));
    }
    write_event(event.SerializeAsString());
  }
}

void RunMetrics::flush() {
  flush(jsonl_);
  flush(events_);
}

void RunMetrics::write_event(const std::string& serialized) {
  append(events_, tfrecord(serialized));
}

void RunMetrics::append(Sink& sink, const std::string& bytes) {
  if (sink.file == nullptr) return;
  errno = 0;
  if (std::fwrite(bytes.data(), 1, bytes.size(), sink.file) != bytes.size()) fail(sink, errno);
}

void RunMetrics::flush(Sink& sink) {
  if (sink.file == nullptr) return;
  errno = 0;
  if (std::fflush(sink.file) != 0) fail(sink, errno);
}

void RunMetrics::fail(Sink& sink, int err) {
  spdlog::warn("[metrics] cannot write {}: {}; no more metrics are written to it, training goes on",
               sink.path, std::strerror(err != 0 ? err : EIO));
  // fclose would retry the buffered bytes and fail again: its result adds nothing.
  std::fclose(sink.file);
  sink.file = nullptr;
}

}  // namespace mowe::metrics
