// The run-metrics library: metrics.jsonl content byte for byte, tags and JSON escaping,
// non-finite values, the TFRecord framing and Event records of the TensorBoard file, resume
// truncation and the SessionLog START, errors at open, and write failures that warn once and let
// training go on. TfeventsFixture writes the run that tests/util/tfevents_reader_test.py (a
// reader sharing no code with this library) and tests/util/mowe_plot_test.sh check.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/checkpoint/crc32c.h"
#include "runtime/files.h"
#include "runtime/metrics/proto/event.pb.h"
#include "runtime/metrics/run_metrics.h"
#include "tests/util/expect_error.h"

namespace mowe::metrics {
namespace {

namespace fs = std::filesystem;
using mowe::testing::expect_error;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string slurp(const std::string& path) {
  return read_file(path, "test file");
}

void append_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << text;
}

// metrics.jsonl with each record's wall-clock time replaced by T, so content compares exactly.
std::string without_times(const std::string& text) {
  return std::regex_replace(text, std::regex(R"(,"time":[0-9]+\.[0-9]{3},)"), ",\"time\":T,");
}

uint64_t get_le(const std::string& bytes, size_t pos, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<unsigned char>(bytes[pos + i])} << (8 * i);
  return v;
}

// Reads every TFRecord of an event file, checking both CRCs and that the file ends at a record
// boundary; returns the decoded events.
std::vector<tb::Event> read_events(const std::string& path) {
  std::string bytes = slurp(path);
  std::vector<tb::Event> events;
  size_t pos = 0;
  while (pos < bytes.size()) {
    EXPECT_LE(pos + 12, bytes.size()) << "record header cut off at byte " << pos;
    if (pos + 12 > bytes.size()) break;
    uint64_t length = get_le(bytes, pos, 8);
    EXPECT_EQ(get_le(bytes, pos + 8, 4),
              checkpoint::crc32c_mask(checkpoint::crc32c(bytes.data() + pos, 8)))
        << "length CRC at byte " << pos;
    EXPECT_LE(pos + 16 + length, bytes.size()) << "record data cut off at byte " << pos;
    if (pos + 16 + length > bytes.size()) break;
    const char* data = bytes.data() + pos + 12;
    EXPECT_EQ(get_le(bytes, pos + 12 + length, 4),
              checkpoint::crc32c_mask(checkpoint::crc32c(data, length)))
        << "data CRC at byte " << pos;
    tb::Event event;
    EXPECT_TRUE(event.ParseFromArray(data, static_cast<int>(length)));
    events.push_back(event);
    pos += 16 + length;
  }
  return events;
}

// step, tag and value of every scalar in events, in order.
struct Point {
  int64_t step;
  std::string tag;
  float value;
};
std::vector<Point> scalars_of(const std::vector<tb::Event>& events) {
  std::vector<Point> points;
  for (const tb::Event& e : events) {
    for (const tb::Summary::Value& v : e.summary().value()) {
      EXPECT_TRUE(v.has_simple_value()) << v.tag();
      points.push_back({e.step(), v.tag(), v.simple_value()});
    }
  }
  return points;
}

// Captures what spdlog's default logger prints while alive.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(text_));
    logger->set_pattern("[%l] %v");
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }
  int count(const std::string& part) const {
    int n = 0;
    std::string all = text();
    for (size_t p = all.find(part); p != std::string::npos; p = all.find(part, p + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};

class RunMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("run_metrics_test.{}.{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string run() const { return (dir_ / "run").string(); }
  fs::path dir_;
};

TEST_F(RunMetricsTest, WritesJsonLinesExactly) {
  double before = 0, after = 0;
  std::string path;
  {
    RunMetrics metrics(run(), 0);
    path = metrics.jsonl_path();
    EXPECT_EQ(path, run() + "/metrics.jsonl");
    before = std::floor(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    std::vector<Scalar> step1 = {{"train/loss", 2.5}, {"train/lr", 1e-05}};
    metrics.write(1, step1);
    std::vector<Scalar> step2 = {{"train/loss", 0.0},
                                 {"eval/loss", 3.0},
                                 {"load/bucket0_max_over_mean", 1.0 / 3.0},
                                 {"train/grad_norm", -0.0},
                                 {"train/tokens", 123456789012.0},
                                 {"big", 1e300}};
    metrics.write(2, step2);
    metrics.write(3, std::span<const Scalar>());  // nothing to record
    metrics.flush();
    // Flushed records are in the file while the writer is still open.
    std::string flushed = slurp(path);
    EXPECT_EQ(std::count(flushed.begin(), flushed.end(), '\n'), 2);
    after = std::ceil(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  std::string text = slurp(path);
  EXPECT_EQ(without_times(text),
            "{\"step\":1,\"time\":T,\"train/loss\":2.5,\"train/lr\":1e-05}\n"
            "{\"step\":2,\"time\":T,\"train/loss\":0,\"eval/loss\":3,"
            "\"load/bucket0_max_over_mean\":0.3333333333333333,\"train/grad_norm\":-0,"
            "\"train/tokens\":123456789012,\"big\":1e+300}\n");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex(R"("time":([0-9]+\.[0-9]{3}))")));
  double time = std::stod(m[1]);
  EXPECT_GE(time, before);
  EXPECT_LE(time, after);
}

TEST_F(RunMetricsTest, NonFiniteValuesAreNullInJsonAndKeptInEvents) {
  std::string jsonl, events;
  {
    RunMetrics metrics(run(), 0);
    std::vector<Scalar> s = {{"a", kNaN}, {"b", kInf}, {"c", -kInf}, {"d", -1e300}, {"e", 0.1}};
    metrics.write(7, s);
    jsonl = metrics.jsonl_path();
    events = metrics.event_path();
  }
  EXPECT_EQ(without_times(slurp(jsonl)),
            "{\"step\":7,\"time\":T,\"a\":null,\"b\":null,\"c\":null,\"d\":-1e+300,\"e\":0.1}\n");
  std::vector<Point> points = scalars_of(read_events(events));
  ASSERT_EQ(points.size(), 5u);
  EXPECT_TRUE(std::isnan(points[0].value));
  EXPECT_EQ(points[1].value, std::numeric_limits<float>::infinity());
  EXPECT_EQ(points[2].value, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(points[3].value, -std::numeric_limits<float>::infinity());  // beyond float's range
  EXPECT_EQ(points[4].value, 0.1f);
}

TEST_F(RunMetricsTest, EscapesJsonKeys) {
  RunMetrics metrics(run(), 0);
  std::vector<Scalar> s = {{"odd\"tag\\x", 1.0}};
  metrics.write(1, s);
  metrics.flush();
  EXPECT_EQ(without_times(slurp(metrics.jsonl_path())),
            "{\"step\":1,\"time\":T,\"odd\\\"tag\\\\x\":1}\n");
}

TEST_F(RunMetricsTest, RefusesInvalidAndRepeatedTags) {
  RunMetrics metrics(run(), 0);
  for (std::string tag : {"train loss", "", "step", "time", "tab\there", "caf\xc3\xa9"}) {
    std::vector<Scalar> s = {{tag, 1.0}};
    expect_error([&] { metrics.write(1, s); }, {"metrics tag '" + tag + "' is not valid"});
  }
  std::vector<Scalar> twice = {{"train/loss", 1.0}, {"train/loss", 2.0}};
  expect_error([&] { metrics.write(4, twice); },
               {"metrics tag 'train/loss' appears twice in the record of step 4"});
  metrics.flush();
  EXPECT_EQ(slurp(metrics.jsonl_path()), "");  // a refused record writes nothing
}

TEST_F(RunMetricsTest, EventFileIsFramedTfRecordsOfEvents) {
  RunMetrics metrics(run(), 0);
  std::vector<Scalar> s1 = {{"train/loss", 2.5}, {"train/lr", 0.001}};
  std::vector<Scalar> s2 = {{"train/loss", 0.0}};
  metrics.write(1, s1);
  metrics.write(2, s2);
  metrics.flush();

  fs::path path(metrics.event_path());
  EXPECT_EQ(path.parent_path(), fs::path(run()) / "tb");
  EXPECT_TRUE(std::regex_match(
      path.filename().string(),
      std::regex(fmt::format(R"(events\.out\.tfevents\.[0-9]{{10}}\..+\.{}\.[0-9]+)", ::getpid()))))
      << path;

  std::vector<tb::Event> events = read_events(path.string());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(events[0].step(), 0);
  EXPECT_GT(events[0].wall_time(), 1.6e9);
  EXPECT_FALSE(events[1].has_session_log());  // a fresh run in an empty directory
  std::vector<Point> points = scalars_of(events);
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[0].step, 1);
  EXPECT_EQ(points[0].tag, "train/loss");
  EXPECT_EQ(points[0].value, 2.5f);
  EXPECT_EQ(points[1].tag, "train/lr");
  EXPECT_EQ(points[1].value, 0.001f);
  EXPECT_EQ(points[2].step, 2);
  EXPECT_EQ(points[2].value, 0.0f);  // present although zero (a oneof keeps it)
  EXPECT_GE(events[1].wall_time(), events[0].wall_time());
}

TEST_F(RunMetricsTest, TwoWritersInOneSecondGetTwoEventFiles) {
  RunMetrics a(run(), 0);
  RunMetrics b((dir_ / "other").string(), 0);
  RunMetrics c(run(), 0);
  EXPECT_NE(a.event_path(), c.event_path());
  EXPECT_NE(fs::path(a.event_path()).filename(), fs::path(b.event_path()).filename());
}

TEST_F(RunMetricsTest, ResumeDropsAbandonedStepsAndStartsSession) {
  std::string first_events;
  {
    RunMetrics metrics(run(), 0);
    for (int step = 1; step <= 5; ++step) {
      std::vector<Scalar> s = {{"train/loss", 10.0 - step}};
      metrics.write(step, s);
    }
    first_events = metrics.event_path();
  }
  // A run killed while writing leaves a partial line.
  append_text(fs::path(run()) / "metrics.jsonl", "{\"step\":6,\"time\":17");
  LogCapture log;
  {
    RunMetrics metrics(run(), 3);  // the checkpoint of step 3: steps 4 and 5 are redone
    EXPECT_NE(metrics.event_path(), first_events);
    std::vector<Scalar> s = {{"train/loss", 0.25}};
    metrics.write(4, s);
    std::vector<tb::Event> events = read_events(metrics.event_path());
    ASSERT_EQ(events.size(), 2u);  // not flushed since the constructor
    EXPECT_EQ(events[0].file_version(), "brain.Event:2");
    EXPECT_EQ(events[1].step(), 4);
    EXPECT_EQ(events[1].session_log().status(), tb::SessionLog::START);
    EXPECT_FALSE(events[1].has_summary());
  }
  EXPECT_EQ(without_times(slurp(run() + "/metrics.jsonl")),
            "{\"step\":1,\"time\":T,\"train/loss\":9}\n"
            "{\"step\":2,\"time\":T,\"train/loss\":8}\n"
            "{\"step\":3,\"time\":T,\"train/loss\":7}\n"
            "{\"step\":4,\"time\":T,\"train/loss\":0.25}\n");
  EXPECT_EQ(log.count("dropped 2 record(s) after step 3, abandoned by this resume"), 1)
      << log.text();
  EXPECT_EQ(log.count("dropped 1 unreadable line(s)"), 1) << log.text();
  // The earlier event file stays as it was: TensorBoard applies the START to it.
  EXPECT_EQ(scalars_of(read_events(first_events)).size(), 5u);
  // No temporary file of the atomic rewrite is left behind.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(run())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST_F(RunMetricsTest, ResumeKeepingEverythingLeavesTheFileAlone) {
  {
    RunMetrics metrics(run(), 0);
    std::vector<Scalar> s = {{"train/loss", 1.0}};
    metrics.write(1, s);
    metrics.write(2, s);
  }
  auto mtime = fs::last_write_time(run() + "/metrics.jsonl");
  std::string before = slurp(run() + "/metrics.jsonl");
  {
    RunMetrics metrics(run(), 2);
    EXPECT_EQ(slurp(metrics.jsonl_path()), before);
    EXPECT_EQ(fs::last_write_time(metrics.jsonl_path()), mtime);
  }
}

TEST_F(RunMetricsTest, FreshStartInAUsedDirectoryAbandonsItsHistory) {
  {
    RunMetrics metrics(run(), 0);
    std::vector<Scalar> s = {{"train/loss", 1.0}};
    metrics.write(1, s);
    metrics.write(2, s);
  }
  RunMetrics metrics(run(), 0);
  EXPECT_EQ(slurp(metrics.jsonl_path()), "");
  std::vector<tb::Event> events = read_events(metrics.event_path());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].step(), 1);
  EXPECT_EQ(events[1].session_log().status(), tb::SessionLog::START);
}

TEST_F(RunMetricsTest, OpenErrorsNameThePathAndTheField) {
  fs::create_directories(dir_);
  append_text(dir_ / "file", "not a directory");
  std::string under_file = (dir_ / "file" / "run").string();
  expect_error([&] { RunMetrics metrics(under_file, 0); },
               {"cannot create metrics directory " + under_file + "/tb", "Not a directory",
                "training.run_dir"});

  fs::create_directories(dir_ / "run" / "metrics.jsonl");  // a directory where the file goes
  expect_error([&] { RunMetrics metrics(run(), 0); },
               {"cannot open metrics file " + run() + "/metrics.jsonl", "Is a directory",
                "training.run_dir"});
}

TEST_F(RunMetricsTest, WriteFailureWarnsOnceAndTrainingGoesOn) {
  fs::create_directories(run());
  // Every write to /dev/full fails with ENOSPC: a disk that filled up after the files were open.
  fs::create_symlink("/dev/full", fs::path(run()) / "metrics.jsonl");
  LogCapture log;
  std::string events;
  {
    RunMetrics metrics(run(), 0);
    events = metrics.event_path();
    // Enough records to overflow stdio's buffer, so writes fail as well as flushes.
    for (int step = 1; step <= 2000; ++step) {
      std::vector<Scalar> s = {{"train/loss", 1.0 / step}};
      metrics.write(step, s);
      if (step % 100 == 0) metrics.flush();
    }
  }
  EXPECT_EQ(log.count("[warning] [metrics] cannot write " + run() +
                      "/metrics.jsonl: No space left on device; no more metrics are written to "
                      "it, training goes on"),
            1)
      << log.text();
  EXPECT_EQ(log.count("[warning]"), 1) << log.text();
  EXPECT_EQ(scalars_of(read_events(events)).size(), 2000u);  // the other file is complete
}

// The body of BothFilesFailingStillLetsTheRunFinish, run in a child process since the limit is
// per process: writes past RLIMIT_FSIZE (EFBIG), then prints the warnings it saw and exits 0.
[[noreturn]] void write_past_file_size_limit(const std::string& dir) {
  std::signal(SIGXFSZ, SIG_IGN);  // otherwise exceeding the limit kills the process
  rlimit limit{20000, 20000};
  ::setrlimit(RLIMIT_FSIZE, &limit);
  LogCapture log;
  {
    RunMetrics metrics(dir, 0);
    for (int step = 1; step <= 3000; ++step) {
      std::vector<Scalar> s = {{"train/loss", 1.0 / step}, {"train/lr", 0.01}};
      metrics.write(step, s);
      if (step % 100 == 0) metrics.flush();
    }
  }
  std::string text = log.text();
  const std::regex event_warning(
      R"(cannot write \S+/tb/events\.out\.tfevents\.\S+: File too large)");
  auto events = std::sregex_iterator(text.begin(), text.end(), event_warning);
  std::fprintf(stderr, "warnings: jsonl %d events %d total %d\n",
               log.count("metrics.jsonl: File too large; no more metrics"),
               static_cast<int>(std::distance(events, std::sregex_iterator())),
               log.count("[warning]"));
  std::exit(0);
}

// Both files failing part-way: one warning each, and the process carries on to its normal exit.
TEST_F(RunMetricsTest, BothFilesFailingStillLetsTheRunFinish) {
  std::string dir = run();
  EXPECT_EXIT(write_past_file_size_limit(dir), ::testing::ExitedWithCode(0),
              "warnings: jsonl 1 events 1 total 2");
  EXPECT_LE(fs::file_size(dir + "/metrics.jsonl"), 20000u);
}

// Writes a known run for the Python reader and plot tests (tests/util/), which run this binary
// with MOWE_METRICS_FIXTURE_DIR set; skipped otherwise. The values below are checked there.
TEST(TfeventsFixture, WritesKnownRun) {
  const char* dir = std::getenv("MOWE_METRICS_FIXTURE_DIR");
  if (dir == nullptr) GTEST_SKIP() << "MOWE_METRICS_FIXTURE_DIR is not set";
  {
    RunMetrics metrics(dir, 0);
    std::vector<std::vector<Scalar>> steps = {
        {{"train/loss", 2.5}, {"train/lr", 0.1}},
        {{"train/loss", 0.0}, {"load/bucket0_max_over_mean", 1.25}},
        {{"train/loss", kNaN}, {"eval/loss", 3.0}},
        {{"train/loss", 1e300}, {"train/grad_norm", -kInf}},
    };
    for (size_t i = 0; i < steps.size(); ++i) metrics.write(static_cast<int64_t>(i) + 1, steps[i]);
  }
  {
    RunMetrics metrics(dir, 3);  // resumed from the checkpoint of step 3
    std::vector<Scalar> step4 = {{"train/loss", 1.75}, {"eval/loss", 2.0}};
    std::vector<Scalar> step5 = {{"train/loss", 1.5}};
    metrics.write(4, step4);
    metrics.write(5, step5);
  }
}

}  // namespace
}  // namespace mowe::metrics
