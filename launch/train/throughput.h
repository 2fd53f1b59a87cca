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
// ranks on the node and BLAS threads. MOWE_SGEMM_PEAK_GFLOPS (per rank) skips both. Collective.
struct SgemmPeak {
  double flops = 0;       // the job's total, FLOP/s
  bool measured = false;  // measured now (some rank had no cached value)
  std::string cache;      // the cache file (empty when caching is impossible or overridden)
};
SgemmPeak job_sgemm_peak(comm::Communicator& comm, int blas_threads);

}  // namespace mowe::train
