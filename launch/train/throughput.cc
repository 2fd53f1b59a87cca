#include "launch/train/throughput.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/memory_estimate.h"
#include "runtime/cpu/blas_kernels.h"
#include "runtime/cpu/sgemm_peak.h"
#include "runtime/files.h"
#include "runtime/log.h"

namespace mowe::train {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown-cpu";
}

std::string cache_file() {
  if (const char* dir = std::getenv("MOWE_CACHE_DIR"); dir && *dir)
    return std::string(dir) + "/sgemm_peak.tsv";
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir)
    return std::string(dir) + "/mowe/sgemm_peak.tsv";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/mowe/sgemm_peak.tsv";
  return "";
}

// Lines "key<TAB>GFLOP/s"; a missing or unreadable cache is simply a miss.
double cache_lookup(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const size_t tab = line.rfind('\t');
    if (tab != std::string::npos && line.compare(0, tab, key) == 0 && tab == key.size())
      return std::strtod(line.c_str() + tab + 1, nullptr);
  }
  return 0;
}

// Keeps the best rate seen for `key`: a lower one (another process may have stored a higher one
// meanwhile) leaves the line as it is. Returns the rate the file holds afterwards.
double cache_store(const std::string& file, const std::string& key, double gflops) {
  try {
    std::filesystem::create_directories(std::filesystem::path(file).parent_path());
    const double stored = cache_lookup(file, key);
    if (stored >= gflops) return stored;
    std::string kept;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(key + "\t", 0) != 0) kept += line + "\n";
    write_file_atomically(file, kept + fmt::format("{}\t{:.3f}\n", key, gflops));
    return gflops;
  } catch (const std::exception& e) {
    // Only a cache: the next run measures again.
    spdlog::warn("[train] could not cache the sgemm peak in {}: {}", file, e.what());
    return 0;
  }
}

// A measurement this far below the cached best is taken as one made under load.
constexpr double kSuspiciousShare = 0.5;

}  // namespace

double step_model_flops(const model::ModelSize& size, const StepWork& work) {
  double forward = double(work.encoder_tokens) * double(size.encoder_flops_per_token) +
                   double(work.decoder_tokens) * double(size.decoder_flops_per_token);
  for (size_t b = 0; b < work.bucket_rows.size() && b < size.buckets.size(); ++b)
    forward += double(work.bucket_rows[b]) * double(size.buckets[b].flops_per_token);
  return 3 * forward;
}

SgemmPeak job_sgemm_peak(comm::Communicator& comm, int blas_threads) {
  SgemmPeak peak;
  const int per_node = model::ranks_on_this_host(comm);  // nodes may differ
  double mine = 0;
  if (const char* fixed = std::getenv("MOWE_SGEMM_PEAK_GFLOPS"); fixed && *fixed) {
    mine = std::strtod(fixed, nullptr);
  } else {
    peak.cache = cache_file();
    // Per OpenBLAS kernel set too: MFU is measured against the kernels the step runs.
    peak.key = fmt::format("{}|{}|{}|{} ranks|{} threads", log::host_name(), cpu_model(),
                           cpu::blas_kernel_set(), per_node, blas_threads);
    if (!peak.cache.empty()) mine = cache_lookup(peak.cache, peak.key);
  }
  // Measure when any rank lacks a value, all at once so each sees the node's contention.
  double missing = mine > 0 ? 0 : 1;
  comm.allreduce(Tensor(&missing, DType::F64, Device::CPU, {1}), comm::ReduceOp::Max);
  if (missing > 0) {
    comm.barrier();
    const double measured = cpu::measure_sgemm_gflops();
    peak.measured = true;
    if (mine > 0 && measured < kSuspiciousShare * mine)
      spdlog::warn(
          "[train] sgemm measured at {:.1f} GFLOP/s now, far below the {:.1f} cached in {}: the "
          "node is likely busy; the cached best stands",
          measured, mine, peak.cache);
    mine = std::max(mine, measured);
    // Every rank that measured offers its figure; the cache keeps the best (an atomic rename).
    if (!peak.cache.empty() && !peak.key.empty()) cache_store(peak.cache, peak.key, mine);
  }
  peak.rank_gflops = mine;
  peak.flops = mine * 1e9;
  comm.allreduce(Tensor(&peak.flops, DType::F64, Device::CPU, {1}), comm::ReduceOp::Sum);
  return peak;
}

double refresh_cached_peak(const SgemmPeak& peak, double job_flops) {
  if (peak.cache.empty() || peak.key.empty() || peak.flops <= 0 || job_flops <= peak.flops)
    return 0;
  return cache_store(peak.cache, peak.key, peak.rank_gflops * (job_flops / peak.flops));
}

double MfuMeter::observe(double achieved) {
  if (peak_ <= 0 || !(achieved > peak_)) return 0;
  const double replaced = peak_;
  peak_ = achieved;
  return replaced;
}

double MfuMeter::mfu(double model_flops, double seconds) {
  if (peak_ <= 0 || seconds <= 0) return 0;
  const double rate = model_flops / seconds;
  observe(rate);
  return rate / peak_;
}

}  // namespace mowe::train
