// A run's scalars per step (losses, learning rate, expert load), written by rank 0 to two files
// in the run directory: metrics.jsonl, one JSON object per line for scripts and launch/mowe_plot,
// and tb/events.out.tfevents.*, TensorBoard's event files. docs/metrics.md has both formats and
// the resume rules.
//
// A metrics file that cannot be written any more (disk full, a failing NFS server) must not end
// a multi-day training job: the first failure of each file is logged as a warning and that file
// is written no further. Only opening them, at startup, throws.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace mowe::metrics {

// tag: printable ASCII without spaces, like "train/loss" or "load/bucket0_max_over_mean";
// "step" and "time" are the JSON record's own keys and cannot be tags.
struct Scalar {
  std::string tag;
  double value;
};

class RunMetrics {
 public:
  // Opens <dir>/metrics.jsonl for appending and creates a new event file in <dir>/tb/, creating
  // the directories. start_step is the step training resumes from (0 for a fresh run): records
  // of metrics.jsonl with a larger step belong to the history the resume abandons and are
  // dropped (the kept lines are rewritten atomically first), and the event file records a
  // SessionLog START at step start_step + 1, which makes TensorBoard drop those steps of the
  // earlier event files. A fresh run in a directory that already has event files does the same
  // at step 1. Throws Error naming the path and training.run_dir when a file cannot be created.
  RunMetrics(const std::string& dir, int64_t start_step);
  ~RunMetrics();  // flushes and closes; never throws
  RunMetrics(const RunMetrics&) = delete;
  RunMetrics& operator=(const RunMetrics&) = delete;

  // One JSON line {"step":N,"time":<unix seconds>,"<tag>":value,...} and one event holding
  // every scalar as a float simple_value; nothing for an empty span. A non-finite value is null
  // in JSON (which has no NaN or Inf) and NaN or Inf in the event, as is a double beyond float's
  // range. Throws Error for an invalid or repeated tag (a bug of the caller); I/O failures only
  // warn (see above).
  void write(int64_t step, std::span<const Scalar> scalars);

  // Hands buffered records to the OS (fflush, not fsync): call at log lines and at the end, so
  // a crash loses at most the records since.
  void flush();

  const std::string& jsonl_path() const { return jsonl_.path; }
  const std::string& event_path() const { return events_.path; }

 private:
  struct Sink {
    std::string path;
    std::FILE* file = nullptr;  // null once closed after a failure
  };
  void append(Sink& sink, const std::string& bytes);
  void flush(Sink& sink);
  void fail(Sink& sink, int err);
  void write_event(const std::string& serialized);

  Sink jsonl_;
  Sink events_;
};

}  // namespace mowe::metrics
