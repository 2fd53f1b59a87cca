// main() for one-process GoogleTest binaries: GoogleTest's own, except that a binary whose every
// case skipped exits kAllSkipped so that ctest reports it as skipped, not passed (skip_status.h).
#include <gtest/gtest.h>

#include "tests/util/skip_status.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const bool failed = RUN_ALL_TESTS() != 0;
  const mowe::test::CaseCounts counts = mowe::test::case_counts();
  mowe::test::print_skipped(counts);
  return mowe::test::exit_status(failed, counts);
}
