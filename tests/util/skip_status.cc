#include "tests/util/skip_status.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace mowe::test {

CaseCounts case_counts() {
  const auto* unit = ::testing::UnitTest::GetInstance();
  return {.run = unit->test_to_run_count(), .skipped = unit->skipped_test_count()};
}

void print_skipped(const CaseCounts& counts) {
  if (counts.skipped == 0) return;
  // One line, on stdout with GoogleTest's own report, in the form launch/test.sh counts.
  std::printf("[  SKIPS   ] %d of %d cases skipped%s\n", counts.skipped, counts.run,
              counts.skipped == counts.run ? " (the whole binary: reported as skipped)" : "");
  std::fflush(stdout);
}

int exit_status(bool failed, const CaseCounts& counts) {
  if (failed) return 1;
  if (counts.run > 0 && counts.skipped == counts.run) return kAllSkipped;
  return 0;
}

}  // namespace mowe::test
