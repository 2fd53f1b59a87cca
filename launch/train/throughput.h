// What a training step is worth in model FLOPs, and the sgemm peak it is compared with: the two
// halves of model FLOPs utilisation (MFU) in the progress line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "model/describe.h"

namespace mowe::train {

// Real (non-padding) tokens of a global batch and the expert rows its MoWE layers computed.
struct StepWork {
  int64_t encoder_tokens = 0, decoder_tokens = 0;
  std::vector<int64_t> bucket_rows;  // per bucket, over all ranks
};

// Model FLOPs of one training step over the real tokens: 3x the forward FLOPs (backward costs
// two forwards), from model::describe's per-token costs. Attention is counted over the
// configured lengths; rematerialisation and padding are not counted, as MFU asks.
double step_model_flops(const model::ModelSize& size, const StepWork& work);

// The job's sgemm peak in FLOP/s: every rank's rate summed, measured with all ranks of a node
// running at once (so they share the cores as in training) and cached per machine: in
// $MOWE_CACHE_DIR, else $XDG_CACHE_HOME/mowe, else ~/.cache/mowe, keyed by host name, CPU model,
// ranks on the node and BLAS threads. MOWE_SGEMM_PEAK_GFLOPS (per rank) skips both. A
// measurement taken while the node is busy reads low, so the cache keeps the best rate seen: a
// new measurement replaces a cached one only when higher, and one far below it is named in the
// log with the cache file. Collective.
struct SgemmPeak {
  double flops = 0;        // the job's total, FLOP/s
  double rank_gflops = 0;  // this rank's share, GFLOP/s (what the cache holds)
  bool measured = false;   // measured now (some rank had no cached value)
  std::string cache;       // the cache file (empty when caching is impossible or overridden)
  std::string key;         // this rank's line in the cache
};
SgemmPeak job_sgemm_peak(comm::Communicator& comm, int blas_threads);

// Stores this rank's share of `job_flops` (the job's peak, raised above peak.flops by a step that
// ran faster) in the cache, scaled as peak.rank_gflops is to peak.flops. Not collective; a no-op
// without a cache. Returns the GFLOP/s stored (0: nothing stored).
double refresh_cached_peak(const SgemmPeak& peak, double job_flops);

// The MFU denominator while the job runs. The sgemm peak is measured under conditions unlike a
// step's (another moment, another load, one square product), so a step can beat it; a peak is
// never below a rate a step achieved, which keeps MFU at or below 100%.
class MfuMeter {
 public:
  explicit MfuMeter(double peak_flops = 0) : initial_(peak_flops), peak_(peak_flops) {}
  // Raises the peak to `achieved` FLOP/s when that is higher. Returns the peak it replaced, or 0
  // when it stands (or when there is no peak: a peak of 0 means MFU is not known).
  double observe(double achieved);
  // The share of the peak that `model_flops` in `seconds` reach, after observing their rate: in
  // [0, 1], 0 without a peak or time.
  double mfu(double model_flops, double seconds);
  double peak() const { return peak_; }
  double initial_peak() const { return initial_; }
  bool raised() const { return peak_ > initial_; }

 private:
  double initial_, peak_;
};

}  // namespace mowe::train
