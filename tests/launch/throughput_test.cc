// The MFU denominator: a step that beats the measured sgemm peak raises it, so no progress line
// shows MFU above 100%, and the cache keeps the best peak seen.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "launch/train/throughput.h"

namespace mowe::train {
namespace {

TEST(MfuMeter, BelowThePeakIsTheShareOfIt) {
  MfuMeter meter(100e9);
  EXPECT_DOUBLE_EQ(meter.mfu(50e9, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(meter.mfu(30e9, 2.0), 0.15);
  EXPECT_FALSE(meter.raised());
  EXPECT_EQ(meter.observe(99e9), 0);
}

TEST(MfuMeter, AStepAboveThePeakRaisesIt) {
  MfuMeter meter(100e9);
  // 102.8% against the fake peak: the rate becomes the peak and MFU is exactly 100%.
  EXPECT_DOUBLE_EQ(meter.mfu(205.6e9, 2.0), 1.0);
  EXPECT_TRUE(meter.raised());
  EXPECT_DOUBLE_EQ(meter.peak(), 102.8e9);
  EXPECT_DOUBLE_EQ(meter.initial_peak(), 100e9);
  // Later steps are measured against the raised peak.
  EXPECT_DOUBLE_EQ(meter.mfu(51.4e9, 1.0), 0.5);
  // observe() names the peak it replaced, once per raise.
  EXPECT_DOUBLE_EQ(meter.observe(110e9), 102.8e9);
  EXPECT_EQ(meter.observe(110e9), 0);
  EXPECT_DOUBLE_EQ(meter.peak(), 110e9);
}

TEST(MfuMeter, NeverAboveOne) {
  MfuMeter meter(1e9);
  for (double flops : {0.5e9, 3e9, 2e9, 40e9, 1e9}) {
    const double mfu = meter.mfu(flops, 1.0);
    EXPECT_GE(mfu, 0);
    EXPECT_LE(mfu, 1.0) << flops;
  }
  EXPECT_DOUBLE_EQ(meter.peak(), 40e9);
}

TEST(MfuMeter, WithoutAPeakOrTimeMfuIsZero) {
  MfuMeter none(0);
  EXPECT_EQ(none.mfu(1e9, 1.0), 0);
  EXPECT_EQ(none.observe(1e9), 0);
  EXPECT_EQ(none.peak(), 0);
  MfuMeter meter(1e9);
  EXPECT_EQ(meter.mfu(1e9, 0.0), 0);
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(SgemmPeakCache, KeepsTheBestPeakSeen) {
  const std::string dir = ::testing::TempDir() + "/mowe_throughput_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/sgemm_peak.tsv";
  std::ofstream(file) << "other|key\t7.000\nhost|cpu|2 ranks|1 threads\t50.000\n";
  SgemmPeak peak;
  peak.flops = 100e9;  // two ranks of 50 GFLOP/s
  peak.rank_gflops = 50;
  peak.cache = file;
  peak.key = "host|cpu|2 ranks|1 threads";
  // A step raised the job's peak by half: this rank's share rises the same.
  EXPECT_DOUBLE_EQ(refresh_cached_peak(peak, 150e9), 75);
  EXPECT_EQ(read(file), "other|key\t7.000\nhost|cpu|2 ranks|1 threads\t75.000\n");
  // Not above the job's starting peak: nothing to store.
  EXPECT_EQ(refresh_cached_peak(peak, 100e9), 0);
  // Lower than what the file holds now (another process stored more): the file keeps its best.
  EXPECT_DOUBLE_EQ(refresh_cached_peak(peak, 120e9), 75);
  EXPECT_EQ(read(file), "other|key\t7.000\nhost|cpu|2 ranks|1 threads\t75.000\n");
  // Without a cache (MOWE_SGEMM_PEAK_GFLOPS), nothing is written.
  peak.cache.clear();
  EXPECT_EQ(refresh_cached_peak(peak, 300e9), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mowe::train
