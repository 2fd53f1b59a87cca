// The exit status of a GoogleTest binary as ctest reads it: GoogleTest itself returns 0 when every
// case skipped (no CUDA device, no NCCL, no SentencePiece module), so ctest would report such a
// binary as passed. Every test binary's main() ends with exit_status() instead: 77, which the
// test's SKIP_RETURN_CODE makes ctest report as skipped, when every case that ran skipped; and a
// line "N of M cases skipped" whenever some did, which launch/test.sh adds up.
#pragma once

namespace mowe::test {

// ctest's SKIP_RETURN_CODE for every GoogleTest binary (tests/CMakeLists.txt).
inline constexpr int kAllSkipped = 77;

struct CaseCounts {
  int run = 0;      // cases that ran (not filtered out or disabled)
  int skipped = 0;  // of those, the ones that called GTEST_SKIP
};

// The counts of the RUN_ALL_TESTS that just returned.
CaseCounts case_counts();

// Prints "N of M cases skipped" (nothing when none skipped).
void print_skipped(const CaseCounts& counts);

// 1 when a case failed, kAllSkipped when every case that ran skipped, otherwise 0.
int exit_status(bool failed, const CaseCounts& counts);

}  // namespace mowe::test
